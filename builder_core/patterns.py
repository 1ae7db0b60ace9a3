"""Patterns and their layers.

A layer is a ``template/`` folder (copied, ``*.j2`` rendered), a ``template_files/`` folder and a
``correspond_file_path.yaml`` mapping its templates to output paths. Every pattern is the common
layer with its own layer over it; a later layer replaces an earlier file at the same output path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from builder_core.errors import MappingError, PackagingError, UnknownPatternError, VariablesError
from builder_core.resources import COMMON_MAPPING, PATTERNS_DIR, data_root
from builder_core.variables import VariableSpec, format_validation_error, read_mapping_file

METADATA_FILE = "pattern.yaml"
TEMPLATE_DIR = "template"
TEMPLATE_FILES_DIR = "template_files"
IGNORED_NAMES = frozenset(
    {"__pycache__", ".DS_Store", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
)


class PatternInfo(BaseModel):
    """What a pattern declares about itself in ``patterns/<name>/pattern.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field(min_length=1)
    components: list[str] = Field(min_length=1)
    sample_model: str = Field(min_length=1)
    # What POST /predict takes: rows of numbers, or the ID of a stored data item.
    request: Literal["rows", "data-id"] = "rows"
    # The pattern's own variables: a default (whose type is the variable's type; a string is a
    # "token"), or ``{default: ..., type: ...}`` naming one of builder's string types.
    variables: dict[str, str | bool | int | float | VariableSpec] = Field(default_factory=dict)
    # Output path (rendered) → a file or folder under the template data, copied as it is.
    sample_files: dict[str, str] = Field(default_factory=dict)
    # Output paths of the common layer that this pattern does not ship (code it has no use for).
    omit: list[str] = Field(default_factory=list)
    # Common output files this pattern replaces wholesale instead of extending, each with why.
    replaces: dict[str, str] = Field(default_factory=dict)

    def defaults(self) -> dict[str, str | bool | int | float]:
        """The pattern's own variables with their default values."""
        return {
            key: spec.default if isinstance(spec, VariableSpec) else spec
            for key, spec in self.variables.items()
        }


@dataclass(frozen=True)
class Layer:
    """One layer of templates: ``root`` holds ``template/`` and ``template_files/``."""

    root: Path
    mapping_file: Path
    mapping_required: bool


@dataclass(frozen=True)
class Pattern:
    """A pattern: its name, what it declares, and its layers in order."""

    name: str
    info: PatternInfo
    layers: tuple[Layer, ...]
    root: Path


def pattern_names(root: Path | None = None) -> list[str]:
    """Names of all patterns under ``root`` (default: the packaged templates), sorted."""
    folder = (root or data_root()) / PATTERNS_DIR
    return sorted(path.parent.name for path in folder.glob(f"*/{METADATA_FILE}"))


def load_pattern(
    name: str, common_mapping: Path | None = None, root: Path | None = None
) -> Pattern:
    """Resolve ``name`` into its layers; ``common_mapping`` replaces the common mapping file."""
    root = root or data_root()
    folder = root / PATTERNS_DIR / name
    if name not in pattern_names(root):
        known = ", ".join(pattern_names(root))
        raise UnknownPatternError(f"--pattern: unknown pattern {name!r} (known: {known})")
    common = Layer(root, common_mapping or root / COMMON_MAPPING, mapping_required=True)
    own = Layer(folder, folder / COMMON_MAPPING, mapping_required=False)
    return Pattern(name, _read_info(folder / METADATA_FILE), (common, own), root)


def _read_info(path: Path) -> PatternInfo:
    try:
        return PatternInfo.model_validate(read_mapping_file(path, "pattern metadata"))
    except (ValidationError, VariablesError) as err:
        detail = (
            format_validation_error(err, str(path)) if isinstance(err, ValidationError) else err
        )
        raise PackagingError(str(detail)) from err


def read_mapping(layer: Layer) -> dict[str, str]:
    """Read a layer's template → output path mapping; a missing pattern mapping is empty."""
    if not layer.mapping_file.is_file():
        if layer.mapping_required:
            raise MappingError(f"{layer.mapping_file}: correspond file not found")
        return {}
    try:
        raw: dict[str, Any] = read_mapping_file(layer.mapping_file, "correspond file")
    except VariablesError as err:
        raise MappingError(str(err)) from err
    mapping: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, str) or not value.strip():
            raise MappingError(f"{layer.mapping_file}: {key}: expected 'template.j2: output/path'")
        if not (layer.root / TEMPLATE_FILES_DIR / key).is_file():
            raise MappingError(
                f"{layer.mapping_file}: {key}: no such template in "
                f"{layer.root / TEMPLATE_FILES_DIR}"
            )
        mapping[key] = value
    return mapping


def template_tree(layer: Layer) -> list[Path]:
    """Every file under a layer's ``template/`` folder, relative to it, sorted."""
    folder = layer.root / TEMPLATE_DIR
    if not folder.is_dir():
        return []
    return sorted(
        path.relative_to(folder)
        for path in folder.rglob("*")
        if path.is_file()
        and not IGNORED_NAMES.intersection(path.relative_to(folder).parts)
        and path.suffix != ".pyc"
    )
