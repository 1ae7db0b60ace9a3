"""Patterns and their layers, and where patterns are found.

A layer is a ``template/`` folder (copied, ``*.j2`` rendered), a ``template_files/`` folder and a
``correspond_file_path.yaml`` mapping its templates to output paths. Every pattern is the common
layer with its own layer over it; a later layer replaces an earlier file at the same output path.

Patterns are packaged (``patterns/<name>/`` of the template data) or found in the folders of the
pattern path (``--pattern-path``, then ``BUILDER_PATTERN_PATH``), laid out the same way. Every
template is known by a name relative to the data root (``template_files/src/app/main.py.j2``,
``patterns/web-single/...``); a pattern from the pattern path names its own files
``external/<name>/...``, a prefix that is no folder of the data root, so its names never collide
with builder's and its templates still extend builder's bases by their usual names.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from builder_core.errors import (
    BuilderError,
    MappingError,
    PackagingError,
    PatternError,
    PatternPathError,
    UnknownPatternError,
    VariablesError,
)
from builder_core.resources import COMMON_MAPPING, PATTERNS_DIR, SAMPLE_MODELS_DIR, data_root
from builder_core.variables import Task, VariableSpec, format_validation_error, read_mapping_file

METADATA_FILE = "pattern.yaml"
TEMPLATE_DIR = "template"
TEMPLATE_FILES_DIR = "template_files"
EXTERNAL_PREFIX = "external"
PATTERN_PATH_ENV = "BUILDER_PATTERN_PATH"
# A pattern's folder name, as packaged patterns are named: it lands in template names and answers.
PATTERN_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
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
    # The model tasks the pattern serves (builder_core.model.Task): all of them unless it says.
    tasks: list[Task] = Field(default_factory=lambda: list(get_args(Task)), min_length=1)
    # Whether its api serves the Open Inference Protocol over gRPC too (on grpc_port); not so
    # for an api that answers with something of its own rather than the model's outputs.
    grpc: bool = True
    # The pattern's own variables: a default (whose type is the variable's type; a string is a
    # "token"), or ``{default: ..., type: ...}`` naming one of builder's string types.
    variables: dict[str, str | bool | int | float | VariableSpec] = Field(default_factory=dict)
    # Output path (rendered) → a file or folder under the template data, copied as it is.
    sample_files: dict[str, str] = Field(default_factory=dict)
    # The same, once per name of a ``names`` variable: variable → {output path: source}, both
    # rendered with ``item`` set to the name. A sample model missing for a name (or any sample
    # model, when the user brings a model) is stood in for by the served model.
    sample_files_each: dict[str, dict[str, str]] = Field(default_factory=dict)
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
    # What its files' template names start with: "" (common), "patterns/<name>/" (packaged) or
    # "external/<name>/" (from the pattern path: the rest of the name is a path under ``root``).
    prefix: str = ""


@dataclass(frozen=True)
class Pattern:
    """A pattern: its name, what it declares, and its layers in order."""

    name: str
    info: PatternInfo
    layers: tuple[Layer, ...]
    root: Path
    # The pattern-path folder it was found in; ``None`` for a packaged pattern.
    search_dir: Path | None = None

    @property
    def folder(self) -> Path:
        """The pattern's own folder (the one holding pattern.yaml)."""
        return self.layers[-1].root

    @property
    def external(self) -> bool:
        """Whether the pattern comes from the pattern path rather than the package."""
        return self.search_dir is not None

    def locate(self, name: str) -> Path:
        """The file a template name (or a ``sample_files`` source) stands for."""
        own = self.layers[-1].prefix
        if self.external and name.startswith(own):
            return self.folder / name.removeprefix(own)
        # Relative to the data root; an absolute name (the user's model) stays as it is.
        return self.root / name


Status = Literal["used", "hidden", "refused", "misnamed"]


@dataclass(frozen=True)
class Found:
    """A pattern folder: packaged (``search_dir`` is ``None``) or in a pattern-path folder."""

    name: str
    folder: Path
    search_dir: Path | None
    status: Status = "used"
    # For a pattern that is not used: the folder of the pattern that takes its name.
    winner: Path | None = None

    @property
    def note(self) -> str:
        """Why the pattern is not used; empty when it is."""
        return {
            "used": "",
            "hidden": f"not used: {self.winner} has the same name and comes first",
            "refused": "refused: a packaged pattern has this name; rename the folder",
            "misnamed": "ignored: a pattern's name is lowercase letters, digits and hyphens",
        }[self.status]


def pattern_names(root: Path | None = None) -> list[str]:
    """Names of all packaged patterns under ``root`` (default: the packaged templates), sorted."""
    folder = (root or data_root()) / PATTERNS_DIR
    return sorted(path.parent.name for path in folder.glob(f"*/{METADATA_FILE}"))


def search_path(
    given: Sequence[Path] = (), environ: Mapping[str, str] | None = None
) -> tuple[Path, ...]:
    """The pattern path: the ``--pattern-path`` folders, then those of ``BUILDER_PATTERN_PATH``.

    Each is made absolute and checked; a folder listed twice counts once, where it came first.

    :raises PatternPathError: naming the option or variable that gave a folder that cannot be used.
    """
    env = os.environ if environ is None else environ
    entries = [(path, f"--pattern-path {path}") for path in given]
    entries += [
        (Path(text), f"{PATTERN_PATH_ENV}: {text}")
        for text in env.get(PATTERN_PATH_ENV, "").split(os.pathsep)
        if text.strip()
    ]
    folders: list[Path] = []
    for path, where in entries:
        folder = checked_search_dir(path, where)
        if folder not in folders:
            folders.append(folder)
    return tuple(folders)


def checked_search_dir(path: Path, where: str) -> Path:
    """``path`` as an absolute pattern-path folder, or a PatternPathError saying why not."""
    if not path.exists():
        raise PatternPathError(f"{where}: no such folder")
    if not path.is_dir():
        raise PatternPathError(f"{where}: not a folder")
    if (path / METADATA_FILE).is_file():
        raise PatternPathError(
            f"{where}: is a pattern itself (it holds {METADATA_FILE}); give the folder that holds "
            f"it: {path.resolve().parent}"
        )
    return path.resolve()


def find_patterns(pattern_path: Sequence[Path] = (), root: Path | None = None) -> list[Found]:
    """Every pattern folder: the packaged ones, then each pattern-path folder's, in order.

    A name is used once: a packaged pattern's name is refused in the pattern path, and among the
    pattern-path folders the first one holding a name wins (as ``PATH`` does for commands).
    """
    root = root or data_root()
    found = [Found(name, root / PATTERNS_DIR / name, None) for name in pattern_names(root)]
    packaged = {item.name for item in found}
    first: dict[str, Path] = {}
    for directory in pattern_path:
        for meta in sorted(directory.glob(f"*/{METADATA_FILE}")):
            name, folder = meta.parent.name, meta.parent
            status: Status = "used"
            if not PATTERN_NAME.fullmatch(name):
                status = "misnamed"
            elif name in packaged:
                status = "refused"
            elif name in first:
                status = "hidden"
            found.append(Found(name, folder, directory, status, first.get(name)))
            if status == "used":
                first[name] = folder
    return found


def load_pattern(
    name: str,
    common_mapping: Path | None = None,
    root: Path | None = None,
    pattern_path: Sequence[Path] = (),
) -> Pattern:
    """Resolve ``name`` into its layers; ``common_mapping`` replaces the common mapping file.

    :param pattern_path: folders to find patterns in besides the packaged ones (see
        :func:`search_path` for the command line's).
    """
    root = root or data_root()
    folders = [checked_search_dir(path, f"pattern path {path}") for path in pattern_path]
    item = _resolve(name, find_patterns(folders, root), folders)
    common = Layer(root, common_mapping or root / COMMON_MAPPING, mapping_required=True)
    if item.search_dir is None:
        own = Layer(item.folder, item.folder / COMMON_MAPPING, False, f"{PATTERNS_DIR}/{name}/")
        return Pattern(name, read_info(item.folder), (common, own), root)
    own = Layer(item.folder, item.folder / COMMON_MAPPING, False, f"{EXTERNAL_PREFIX}/{name}/")
    info = read_info(item.folder, PatternError)
    if not (root / SAMPLE_MODELS_DIR / info.sample_model / "model.onnx").is_file():
        samples = (root / SAMPLE_MODELS_DIR).iterdir()
        known = ", ".join(sorted(path.name for path in samples if (path / "model.onnx").is_file()))
        raise PatternError(
            f"{item.folder / METADATA_FILE}: sample_model: {info.sample_model!r} is not one of "
            f"builder's sample models ({known})"
        )
    return Pattern(name, info, (common, own), root, item.search_dir)


def _resolve(name: str, found: list[Found], folders: Sequence[Path]) -> Found:
    """The pattern ``name`` stands for, or an error listing what there is and where it looked."""
    matches = [item for item in found if item.name == name]
    # Refused even for the packaged pattern of that name: a user who put a folder of that name in
    # the pattern path expects it, and generating builder's instead would go unnoticed.
    for item in matches:
        if item.status in ("refused", "misnamed"):
            raise PatternPathError(f"--pattern {name}: {item.folder}: {item.note}")
    for item in matches:
        if item.status == "used":
            return item
    known = ", ".join(sorted({item.name for item in found if item.status == "used"}))
    looked = (
        f"looked in the packaged patterns and in {', '.join(map(str, folders))}"
        if folders
        else "looked in the packaged patterns only; --pattern-path DIR or "
        f"{PATTERN_PATH_ENV} adds folders of your own"
    )
    raise UnknownPatternError(f"--pattern: unknown pattern {name!r} (known: {known}; {looked})")


def read_info(folder: Path, error: type[BuilderError] = PackagingError) -> PatternInfo:
    """A pattern folder's ``pattern.yaml``; anything wrong with it is an ``error`` naming it."""
    path = folder / METADATA_FILE
    try:
        return PatternInfo.model_validate(read_mapping_file(path, "pattern metadata"))
    except (ValidationError, VariablesError) as err:
        detail = (
            format_validation_error(err, str(path)) if isinstance(err, ValidationError) else err
        )
        raise error(str(detail)) from err


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
