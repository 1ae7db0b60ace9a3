"""The pipeline: variables → pattern layers → plan → render → verify → move into place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import jinja2
import yaml

from builder_core import output
from builder_core.errors import InvalidInputError, PackagingError
from builder_core.model import ServedModel, describe, load_model
from builder_core.patterns import (
    TEMPLATE_DIR,
    TEMPLATE_FILES_DIR,
    Layer,
    Pattern,
    load_pattern,
    read_mapping,
    template_tree,
)
from builder_core.render import make_environment, render_path, render_template
from builder_core.resources import DEFAULT_VARIABLES, SAMPLE_MODELS_DIR
from builder_core.variables import (
    Variables,
    read_mapping_file,
    validate_variables,
    variables_model,
)

ANSWERS_FILE = ".builder-answers.yml"
MODELS_DIR = "models"
TEMPLATE_SUFFIX = ".j2"
# Keys that describe the packaged sample model: they are dropped when the user brings a model.
MODEL_KEYS = frozenset(
    {
        "model_file_name",
        "label_file_name",
        "data_type",
        "data_structure",
        "data_sample",
        "prediction_type",
        "prediction_structure",
        "prediction_sample",
    }
)


@dataclass(frozen=True)
class PlannedFile:
    """One output file: copied byte for byte from ``source``, or rendered from ``template``."""

    path: PurePosixPath
    action: Literal["copy", "render", "write"]
    source: str


@dataclass(frozen=True)
class BuildResult:
    """What a build produced (or, for a dry run, would produce)."""

    target: Path
    pattern: str
    variables: Variables
    files: tuple[PlannedFile, ...]
    written: bool


def build(
    *,
    name: str | None = None,
    pattern: str = "web-single",
    variable_file: Path | None = None,
    correspond_file_path: Path | None = None,
    output_dir: Path = Path(),
    model: Path | None = None,
    labels: Path | None = None,
    force: bool = False,
    dry_run: bool = False,
    template_root: Path | None = None,
) -> BuildResult:
    """Generate a service into ``output_dir / <name>``.

    :param name: the service's name (a DNS-1123 label); wins over ``name`` in the variables.
    :param pattern: which serving pattern to generate (see :func:`pattern_names`).
    :param variable_file: a ``vars.yaml``; ``None`` takes the packaged default.
    :param correspond_file_path: replaces the common template → output path mapping.
    :param output_dir: the folder the service folder is created in.
    :param model: an ONNX model to serve instead of the pattern's sample model.
    :param labels: the label file that goes with ``model`` (required with it).
    :param force: replace an existing service folder.
    :param dry_run: plan, render and verify everything, but write nothing.
    :param template_root: a folder laid out like the packaged template data, used instead of it.
    :raises BuilderError: a subclass naming what is wrong; nothing is left behind.
    """
    chosen = load_pattern(pattern, correspond_file_path, template_root)
    served = _served_model(chosen, model, labels)
    variables = _load_variables(variable_file, name, chosen, served, user_model=model is not None)
    variables = describe(variables, served, str(variable_file or DEFAULT_VARIABLES))
    env = make_environment(chosen.root)
    context = template_context(variables, chosen, served)
    planned = plan(chosen, env, context, served)
    contents = render_all(planned, env, context, chosen.root)
    contents[PurePosixPath(ANSWERS_FILE)] = output.FileContent(
        answers_text(variables, chosen, served, model is not None).encode(), 0o644
    )
    planned.append(PlannedFile(PurePosixPath(ANSWERS_FILE), "write", "answers"))
    output.verify(contents, {str(item.path): item.source for item in planned})
    target = output_dir / variables.name
    if not dry_run:
        output.write_tree(contents, target, force=force)
    return BuildResult(target, chosen.name, variables, tuple(planned), written=not dry_run)


def _served_model(chosen: Pattern, model: Path | None, labels: Path | None) -> ServedModel:
    if model is None:
        if labels is not None:
            raise InvalidInputError("--labels: only meaningful together with --model")
        sample = chosen.root / SAMPLE_MODELS_DIR / chosen.info.sample_model
        return load_model(sample / "model.onnx", sample / "label.json")
    if labels is None:
        raise InvalidInputError("--model: a label file is required too (--labels PATH.json)")
    return load_model(model, labels)


def _load_variables(
    variable_file: Path | None,
    name: str | None,
    chosen: Pattern,
    served: ServedModel,
    *,
    user_model: bool,
) -> Variables:
    path = variable_file or chosen.root / DEFAULT_VARIABLES
    raw = read_mapping_file(path, "variable file")
    if user_model and variable_file is None:
        raw = {key: value for key, value in raw.items() if key not in MODEL_KEYS}
        raw.setdefault("model_file_name", _file_name(served.model_path, "model.onnx"))
        raw.setdefault("label_file_name", _file_name(served.label_path, "label.json"))
    if name is not None:
        raw["name"] = name
    return validate_variables(raw, str(path), variables_model(chosen.info.variables))


def _file_name(path: Path, fallback: str) -> str:
    """Keep the user's file name where it is a plain one with the right suffix."""
    candidate = path.name
    ok = candidate.replace(".", "").replace("_", "").replace("-", "").isalnum()
    return candidate if ok and candidate.endswith(Path(fallback).suffix) else fallback


def template_context(variables: Variables, chosen: Pattern, served: ServedModel) -> dict[str, Any]:
    """Everything a template sees: the variables, plus what was read from the model and pattern."""
    from builder_core import __version__

    signature = served.signature
    return {
        **variables.model_dump(mode="json"),
        "image": variables.image,
        "pattern": chosen.name,
        "pattern_description": chosen.info.description,
        "components": chosen.info.components,
        "builder_version": __version__,
        "model": {
            "input_name": served.input.name,
            "input_dtype": served.input.dtype,
            "row_shape": list(served.row_shape),
            "output_name": served.output.name,
            "output_dtype": served.output.dtype,
            "labels": list(served.labels),
            "sha256": signature.sha256,
            "producer": f"{signature.producer_name} {signature.producer_version}".strip(),
            "opset": signature.opset,
        },
    }


def plan(
    chosen: Pattern, env: jinja2.Environment, context: dict[str, Any], served: ServedModel
) -> list[PlannedFile]:
    """Every output file with where it comes from; a later layer wins at the same path."""
    entries: dict[PurePosixPath, PlannedFile] = {}
    for layer in chosen.layers:
        for item in _layer_files(chosen.root, layer, env, context):
            entries[item.path] = item
    for text, relative in chosen.info.sample_files.items():
        for path, origin in _sample_files(env, context, text, chosen.root / relative):
            entries[path] = PlannedFile(path, "copy", str(origin))
    for origin, file_name in (
        (served.model_path, "model_file_name"),
        (served.label_path, "label_file_name"),
    ):
        path = PurePosixPath(MODELS_DIR, context[file_name])
        entries[path] = PlannedFile(path, "copy", str(origin))
    return [entries[path] for path in sorted(entries)]


def _layer_files(
    root: Path, layer: Layer, env: jinja2.Environment, context: dict[str, Any]
) -> list[PlannedFile]:
    """A layer's ``template/`` tree (``*.j2`` rendered) and its mapped ``template_files/``."""
    base = layer.root.relative_to(root).as_posix()
    prefix = "" if base == "." else f"{base}/"
    files = []
    for relative in template_tree(layer):
        name = f"{prefix}{TEMPLATE_DIR}/{relative.as_posix()}"
        rendered = relative.name.endswith(TEMPLATE_SUFFIX)
        text = relative.as_posix().removesuffix(TEMPLATE_SUFFIX)
        path = render_path(env, text, context, name)
        files.append(PlannedFile(path, "render" if rendered else "copy", name))
    for key, value in read_mapping(layer).items():
        path = render_path(env, value, context, f"{layer.mapping_file}: {key}")
        files.append(PlannedFile(path, "render", f"{prefix}{TEMPLATE_FILES_DIR}/{key}"))
    return files


def _sample_files(
    env: jinja2.Environment, context: dict[str, Any], text: str, source: Path
) -> list[tuple[PurePosixPath, Path]]:
    """A pattern's sample file, or every file of a sample folder, with its output path."""
    where = f"sample_files: {text}"
    base = render_path(env, text, context, where)
    if source.is_file():
        return [(base, source)]
    if not source.is_dir():
        raise PackagingError(f"{where}: {source} does not exist")
    files = sorted(path for path in source.rglob("*") if path.is_file())
    return [(base / path.relative_to(source).as_posix(), path) for path in files]


def render_all(
    planned: list[PlannedFile], env: jinja2.Environment, context: dict[str, Any], root: Path
) -> dict[PurePosixPath, output.FileContent]:
    """Render or copy every planned file into memory, keeping each source file's mode."""
    contents: dict[PurePosixPath, output.FileContent] = {}
    for item in planned:
        source = Path(item.source) if Path(item.source).is_absolute() else root / item.source
        mode = source.stat().st_mode & 0o777
        if item.action == "render":
            data = render_template(env, item.source, context).encode("utf-8")
        else:
            data = output.read_bytes(source)
        contents[item.path] = output.FileContent(data, mode)
    return contents


class _IndentedDumper(yaml.SafeDumper):
    """Indent lists under their key, as yamllint and most editors expect."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def answers_text(
    variables: Variables, chosen: Pattern, served: ServedModel, user_model: bool
) -> str:
    """The answers file: enough to regenerate or upgrade the project later."""
    from builder_core import __version__

    record = {
        "builder_version": __version__,
        "pattern": chosen.name,
        "model": {
            "source": "user" if user_model else f"sample:{chosen.info.sample_model}",
            "sha256": served.signature.sha256,
        },
        "variables": variables.model_dump(mode="json"),
    }
    header = (
        "# Written by builder when this project was generated; upgrades read it. Do not edit.\n"
    )
    dumped = yaml.dump(
        record, Dumper=_IndentedDumper, sort_keys=False, default_flow_style=False, width=100
    )
    return header + dumped
