"""The pipeline: variables → pattern layers → plan → render → verify → move into place."""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import jinja2

from builder_core import layout, output
from builder_core.errors import (
    GeneratedFileError,
    InvalidInputError,
    ModelFileError,
    PackagingError,
    PatternError,
    TemplateError,
    VariablesError,
)
from builder_core.model import (
    ServedModel,
    describe,
    labels_json,
    load_model,
    record_shape,
    row_shape,
    with_task,
)
from builder_core.onnx_info import TensorInfo
from builder_core.patterns import (
    METADATA_FILE,
    TEMPLATE_DIR,
    TEMPLATE_FILES_DIR,
    Layer,
    Pattern,
    load_pattern,
    read_mapping,
    template_tree,
)
from builder_core.portable import dump_answers
from builder_core.render import make_environment, render_path, render_template
from builder_core.resources import DEFAULT_VARIABLES, SAMPLE_MODELS_DIR
from builder_core.variables import (
    Variables,
    check_name,
    read_mapping_file,
    validate_variables,
    variables_model,
)
from builder_core.versions import TEMPLATE_VERSION, parse_version

ANSWERS_FILE = ".builder-answers.yml"
# Templates from this version on declare every common file a pattern replaces (pattern.yaml
# replaces:); older versions, kept for upgrades, are rendered as they were.
DECLARED_REPLACEMENTS_SINCE = (0, 2, 0)
SAMPLE_SOURCE = "sample:"  # model.source in the answers file: "sample:<name>" or "user"
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
        "task",
    }
)
# The source of a label file the generator writes itself: a classifier's labels read from the model.
DERIVED_LABELS = "labels read from the model"


@dataclass(frozen=True)
class PlannedFile:
    """One output file: copied byte for byte from ``source``, or rendered from ``template``."""

    path: PurePosixPath
    action: Literal["copy", "render", "write"]
    source: str
    # The output path before rendering: a cookiecutter export keeps the variables in it.
    path_template: str = ""


@dataclass(frozen=True)
class BuildResult:
    """What a build produced (or, for a dry run, would produce)."""

    target: Path
    pattern: str
    variables: Variables
    files: tuple[PlannedFile, ...]
    written: bool
    # Where ``--force`` moved the folder that was at ``target`` before, if there was one.
    previous: Path | None = None


@dataclass(frozen=True)
class RenderedProject:
    """A whole project rendered and verified in memory: what build writes and upgrade merges."""

    pattern: Pattern
    variables: Variables
    context: dict[str, Any]
    files: tuple[PlannedFile, ...]
    contents: dict[PurePosixPath, output.FileContent]
    answers: dict[str, Any]


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
    template_version: str = TEMPLATE_VERSION,
    pattern_path: Sequence[Path] = (),
) -> BuildResult:
    """Generate a service into ``output_dir / <name>``.

    :param name: the service's name (a DNS-1123 label); wins over ``name`` in the variables.
    :param pattern: which serving pattern to generate (see :func:`pattern_names`).
    :param variable_file: a ``vars.yaml``; ``None`` takes the packaged default.
    :param correspond_file_path: replaces the common template → output path mapping.
    :param output_dir: the folder the service folder is created in.
    :param model: an ONNX model to serve instead of the pattern's sample model.
    :param labels: the label file that goes with ``model`` (required with it).
    :param force: replace an existing service folder that builder made; the old one is moved
        aside to ``BuildResult.previous``, never deleted.
    :param dry_run: plan, render and verify everything, but write nothing.
    :param template_root: a folder laid out like the packaged template data, used instead of it.
    :param template_version: the version of the templates used, recorded in the answers file.
    :param pattern_path: folders of patterns of your own, searched in order after the packaged
        patterns (a packaged pattern's name is refused there; see :func:`search_path`).
    :raises BuilderError: a subclass naming what is wrong; nothing is left behind.
    """
    project = render_project(
        name=name,
        pattern=pattern,
        variable_file=variable_file,
        correspond_file_path=correspond_file_path,
        model=model,
        labels=labels,
        template_root=template_root,
        template_version=template_version,
        pattern_path=pattern_path,
    )
    target = output_dir / project.variables.name
    previous = None
    if not dry_run:
        previous = output.write_tree(project.contents, target, force=force, marker=ANSWERS_FILE)
    return BuildResult(
        target,
        project.pattern.name,
        project.variables,
        project.files,
        written=not dry_run,
        previous=previous,
    )


def render_project(
    *,
    name: str | None = None,
    pattern: str = "web-single",
    variable_file: Path | None = None,
    variables: Mapping[str, Any] | None = None,
    variables_source: str = "variables",
    correspond_file_path: Path | None = None,
    model: Path | None = None,
    labels: Path | None = None,
    template_root: Path | None = None,
    template_version: str = TEMPLATE_VERSION,
    pattern_path: Sequence[Path] = (),
) -> RenderedProject:
    """Render and verify a whole project in memory; :func:`build` documents the options.

    :param variables: the variables themselves, instead of a ``variable_file`` (upgrades pass a
        project's recorded answers); ``variables_source`` names them in error messages.
    """
    # Absolute, so the sources of copied files are found wherever the templates are.
    root = template_root.resolve() if template_root is not None else None
    chosen = load_pattern(pattern, correspond_file_path, root, pattern_path)
    with pattern_input(chosen):
        return _render(
            chosen,
            name=name,
            variable_file=variable_file,
            variables=variables,
            variables_source=variables_source,
            model=model,
            labels=labels,
            template_version=template_version,
        )


@contextmanager
def pattern_input(chosen: Pattern) -> Iterator[None]:
    """A pattern from the pattern path is the user's input: its mistakes exit 2, naming it.

    In a packaged pattern the same mistakes are a broken builder and stay as they are.
    """
    try:
        yield
    except (PackagingError, TemplateError, GeneratedFileError) as err:
        if not chosen.external:
            raise
        where = "" if str(chosen.folder) in str(err) else f" (pattern {chosen.folder})"
        raise PatternError(f"{err}{where}") from err


def _render(
    chosen: Pattern,
    *,
    name: str | None,
    variable_file: Path | None,
    variables: Mapping[str, Any] | None,
    variables_source: str,
    model: Path | None,
    labels: Path | None,
    template_version: str,
) -> RenderedProject:
    """:func:`render_project` once the pattern is found."""
    served = _served_model(chosen, model, labels)
    user_model = model is not None
    if variables is None:
        raw, source = _variables_file(variable_file, chosen, served, user_model=user_model)
        described_source = str(variable_file or DEFAULT_VARIABLES)
    else:
        raw, source, described_source = dict(variables), variables_source, variables_source
    if name is not None:
        check_name(name, "--name")
        raw["name"] = name
    given = validate_variables(raw, source, variables_model(chosen.info.variables))
    served = with_task(served, given.task)
    if served.task not in chosen.info.tasks:
        raise ModelFileError(
            f"{served.model_path}: the {chosen.name} pattern serves "
            f"{' and '.join(chosen.info.tasks)} models; this model is served as {served.task} "
            "(task in the variables)"
        )
    checked = describe(given, served, described_source)
    env = environment(chosen)
    context = template_context(checked, chosen, served)
    if parse_version(template_version, "template_version") >= DECLARED_REPLACEMENTS_SINCE:
        file_origins(chosen, env, context)
    planned = plan(chosen, env, context, served)
    contents = render_all(planned, env, context, chosen.locate)
    for item in planned:
        if item.source == DERIVED_LABELS:
            contents[item.path] = output.FileContent(labels_json(served), 0o644)
    answers = answers_record(checked, chosen, served, user_model, template_version)
    if given.data_sample is None:
        # Derived from the model (zeros of its input shape) and derived again on upgrade: for an
        # image model that is a list of 150,000 numbers the answers file has no need to carry.
        del answers["variables"]["data_sample"]
    answers_path = PurePosixPath(ANSWERS_FILE)
    contents[answers_path] = output.FileContent(dump_answers(answers).encode(), 0o644)
    planned.append(PlannedFile(answers_path, "write", "answers", ANSWERS_FILE))
    output.verify(contents, {str(item.path): item.source for item in planned})
    return RenderedProject(chosen, checked, context, tuple(planned), contents, answers)


def environment(chosen: Pattern) -> jinja2.Environment:
    """The Jinja environment of ``chosen``: builder's templates, and its own if it is external."""
    own = (chosen.layers[-1].prefix, chosen.folder) if chosen.external else None
    return make_environment(chosen.root, own=own)


def _served_model(chosen: Pattern, model: Path | None, labels: Path | None) -> ServedModel:
    if model is None:
        if labels is not None:
            raise InvalidInputError("--labels: only meaningful together with --model")
        sample = chosen.root / SAMPLE_MODELS_DIR / chosen.info.sample_model
        return load_model(sample / "model.onnx", sample / "label.json")
    # Absolute: planned copies are found relative to the template data unless absolute.
    return load_model(model.resolve(), labels.resolve() if labels else None)


def default_variables(chosen: Pattern) -> Path:
    """The pattern's own ``vars.yaml`` (describing its own sample model), else the common one."""
    own = chosen.layers[-1].root / DEFAULT_VARIABLES
    return own if own.is_file() else chosen.root / DEFAULT_VARIABLES


def _variables_file(
    variable_file: Path | None, chosen: Pattern, served: ServedModel, *, user_model: bool
) -> tuple[dict[str, Any], str]:
    """The raw variables of ``variable_file`` (or the packaged default) and where they came from."""
    path = variable_file or default_variables(chosen)
    raw = read_mapping_file(path, "variable file")
    if user_model and variable_file is None:
        raw = {key: value for key, value in raw.items() if key not in MODEL_KEYS}
        raw.setdefault("model_file_name", _file_name(served.model_path, "model.onnx"))
        if served.label_path is not None:
            raw.setdefault("label_file_name", _file_name(served.label_path, "label.json"))
    return raw, str(path)


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
        "serves_grpc": chosen.info.grpc,
        "builder_version": __version__,
        "model": {
            "task": served.task,
            "records": served.records,
            "inputs": [_tensor_context(tensor) for tensor in served.inputs],
            "outputs": [_tensor_context(tensor) for tensor in signature.outputs],
            "input_name": served.input.name,
            "input_dtype": served.input.dtype,
            "row_shape": list(served.row_shape),
            "output_name": served.output.name,
            "output_dtype": served.output.dtype,
            "output_kind": served.output.kind,
            "value_row_shape": list(record_shape(served.output)),
            "labels": list(served.labels),
            "sha256": signature.sha256,
            "producer": f"{signature.producer_name} {signature.producer_version}".strip(),
            "opset": signature.opset,
        },
    }


def _tensor_context(tensor: TensorInfo) -> dict[str, Any]:
    return {
        "name": tensor.name,
        # A record's key can be a class attribute (else a functional TypedDict names it).
        "identifier": tensor.name.isidentifier() and not keyword.iskeyword(tensor.name),
        "dtype": tensor.dtype,
        "kind": tensor.kind,
        "shape": list(tensor.shape),
        "row_shape": list(row_shape(tensor)),
        "record_shape": list(record_shape(tensor)),
    }


def plan(
    chosen: Pattern, env: jinja2.Environment, context: dict[str, Any], served: ServedModel
) -> list[PlannedFile]:
    """Every output file with where it comes from; a later layer wins at the same path."""
    entries: dict[PurePosixPath, PlannedFile] = {}
    for layer in chosen.layers:
        for item in _layer_files(layer, env, context):
            entries[item.path] = item
    for omitted in chosen.info.omit:
        if entries.pop(PurePosixPath(omitted), None) is None:
            raise PackagingError(f"pattern.yaml: omit: {omitted}: no such output file")
    claimed: dict[PurePosixPath, str] = {}
    sample_model = chosen.root / SAMPLE_MODELS_DIR / chosen.info.sample_model / "model.onnx"
    for text, relative in chosen.info.sample_files.items():
        for path, origin, unrendered in _sample_files(env, context, text, chosen.locate(relative)):
            if origin.suffix == ".onnx" and served.model_path != sample_model:
                # A sample model beside the served one (sync-async's slow model) is made for the
                # sample's signature: with the user's model, the user's model stands in for it.
                origin = served.model_path
            _claim(entries, claimed, path, unrendered)
            entries[path] = PlannedFile(path, "copy", str(origin), unrendered)
    for path, origin, unrendered in _sample_files_each(chosen, env, context, served, sample_model):
        _claim(entries, claimed, path, unrendered)
        entries[path] = PlannedFile(path, "copy", str(origin), unrendered)
    model_files: list[tuple[Path | None, str]] = [(served.model_path, "model_file_name")]
    if served.task == "classification":
        model_files.append((served.label_path, "label_file_name"))
    for model_file, file_name in model_files:
        path = PurePosixPath(MODELS_DIR, context[file_name])
        unrendered = f"{MODELS_DIR}/{{{{ {file_name} }}}}"
        _claim(entries, claimed, path, unrendered)
        if model_file is None:
            entries[path] = PlannedFile(path, "write", DERIVED_LABELS, unrendered)
        else:
            entries[path] = PlannedFile(path, "copy", str(model_file), unrendered)
    return [entries[path] for path in sorted(entries)]


def explain(
    pattern: str, template_root: Path | None = None, pattern_path: Sequence[Path] = ()
) -> list[layout.Origin]:
    """Every output file of ``pattern`` (with its default variables) and where it comes from."""
    root = template_root.resolve() if template_root else None
    chosen = load_pattern(pattern, root=root, pattern_path=pattern_path)
    with pattern_input(chosen):
        served = _served_model(chosen, None, None)
        path = default_variables(chosen)
        model = variables_model(chosen.info.variables)
        given = validate_variables(read_mapping_file(path, "variable file"), str(path), model)
        served = with_task(served, given.task)
        checked = describe(given, served, str(path))
        return file_origins(chosen, environment(chosen), template_context(checked, chosen, served))


def file_origins(
    chosen: Pattern, env: jinja2.Environment, context: dict[str, Any]
) -> list[layout.Origin]:
    """How each output file of ``chosen`` relates to the common layer (see :mod:`layout`).

    :raises PackagingError: a pattern file replaces a common one without declaring why.
    """
    common, *own = (
        {
            item.path: layout.LayerFile(item.path, item.source, item.action == "render")
            for item in _layer_files(layer, env, context)
        }
        for layer in chosen.layers
    )
    where = str(chosen.layers[-1].root / METADATA_FILE)
    pattern_files = own[0] if own else {}
    return layout.origins(
        chosen.locate, common, pattern_files, chosen.info.replaces, chosen.info.omit, where=where
    )


def _claim(
    entries: dict[PurePosixPath, PlannedFile],
    claimed: dict[PurePosixPath, str],
    path: PurePosixPath,
    unrendered: str,
) -> None:
    """A file named by a variable must not land on any other output file."""
    variable = _variable_in(unrendered)
    if path in claimed or path in entries:
        other = claimed.get(path) or f"the generated file {path}"
        raise VariablesError(
            f"variables: {variable}: {path.name!r} would overwrite {other}; choose another name"
        )
    claimed[path] = f"{variable} ({path})" if variable != unrendered else str(path)


def _variable_in(unrendered: str) -> str:
    """``models/{{ slow_model_file_name }}`` → ``slow_model_file_name`` (else the path itself)."""
    match = re.search(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", unrendered)
    return match[1] if match else unrendered


def _layer_files(
    layer: Layer, env: jinja2.Environment, context: dict[str, Any]
) -> list[PlannedFile]:
    """A layer's ``template/`` tree (``*.j2`` rendered) and its mapped ``template_files/``."""
    prefix = layer.prefix
    files = []
    for relative in template_tree(layer):
        name = f"{prefix}{TEMPLATE_DIR}/{relative.as_posix()}"
        rendered = relative.name.endswith(TEMPLATE_SUFFIX)
        text = relative.as_posix().removesuffix(TEMPLATE_SUFFIX)
        path = render_path(env, text, context, name)
        files.append(PlannedFile(path, "render" if rendered else "copy", name, text))
    for key, value in read_mapping(layer).items():
        path = render_path(env, value, context, f"{layer.mapping_file}: {key}")
        source = f"{prefix}{TEMPLATE_FILES_DIR}/{key}"
        files.append(PlannedFile(path, "render", source, value.removeprefix("{}/")))
    return files


def _sample_files_each(
    chosen: Pattern,
    env: jinja2.Environment,
    context: dict[str, Any],
    served: ServedModel,
    sample_model: Path,
) -> list[tuple[PurePosixPath, Path, str]]:
    """``sample_files_each``: one copy per name of the variable; output path, origin, template."""
    files: list[tuple[PurePosixPath, Path, str]] = []
    for variable, mapping in chosen.info.sample_files_each.items():
        for item in str(context[variable]).split(","):
            item_context = {**context, "item": item}
            for text, relative in mapping.items():
                where = f"sample_files_each: {variable}: {text}"
                path = render_path(env, text, item_context, where)
                origin = chosen.locate(str(render_path(env, relative, item_context, where)))
                if origin.suffix == ".onnx" and (
                    served.model_path != sample_model or not origin.is_file()
                ):
                    # Made for the sample's signature, or no sample for this name: the served
                    # model stands in, so that the project works until the real one is put there.
                    origin = served.model_path
                if not origin.is_file():
                    raise PackagingError(f"{where}: {origin} does not exist")
                files.append((path, origin, text))
    return files


def _sample_files(
    env: jinja2.Environment, context: dict[str, Any], text: str, source: Path
) -> list[tuple[PurePosixPath, Path, str]]:
    """A pattern's sample file, or every file of a sample folder: output path, origin, template."""
    where = f"sample_files: {text}"
    base = render_path(env, text, context, where)
    unrendered = text.removeprefix("{}/")
    if source.is_file():
        return [(base, source, unrendered)]
    if not source.is_dir():
        raise PackagingError(f"{where}: {source} does not exist")
    files = sorted(
        path.relative_to(source).as_posix() for path in source.rglob("*") if path.is_file()
    )
    return [(base / name, source / name, f"{unrendered}/{name}") for name in files]


def render_all(
    planned: list[PlannedFile],
    env: jinja2.Environment,
    context: dict[str, Any],
    locate: Callable[[str], Path],
) -> dict[PurePosixPath, output.FileContent]:
    """Render or copy every planned file into memory, keeping each source file's mode.

    :param locate: the file a source name stands for (:meth:`Pattern.locate`).
    """
    contents: dict[PurePosixPath, output.FileContent] = {}
    for item in planned:
        if item.action == "write":
            continue
        source = locate(item.source)
        mode = source.stat().st_mode & 0o777
        if item.action == "render":
            data = render_template(env, item.source, context).encode("utf-8")
        else:
            data = output.read_bytes(source)
        contents[item.path] = output.FileContent(data, mode)
    return contents


def answers_record(
    variables: Variables,
    chosen: Pattern,
    served: ServedModel,
    user_model: bool,
    template_version: str = TEMPLATE_VERSION,
) -> dict[str, Any]:
    """What the answers file records: enough to regenerate or upgrade the project later."""
    from builder_core import __version__

    return {
        "builder_version": __version__,
        "template_version": template_version,
        "pattern": chosen.name,
        "model": {
            "source": "user" if user_model else f"{SAMPLE_SOURCE}{chosen.info.sample_model}",
            "sha256": served.signature.sha256,
        },
        "variables": variables.model_dump(mode="json"),
    }
