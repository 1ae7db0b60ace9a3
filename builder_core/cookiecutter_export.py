"""``builder export-cookiecutter``: a pattern as a cookiecutter template that renders identically.

The export is laid out as cookiecutter expects::

    cookiecutter.json            prompts for the scalar variables; "_builder" carries the rest
    builder_extension.py         the local Jinja extension (builder_core/portable.py, verbatim)
    templates/...                builder's templates, verbatim, at their usual relative paths
    {{cookiecutter.name}}/...    one file per output file

Copied files are copied as they are (``_copy_without_render``). Each rendered file is the one
line ``{{ builder_render("<template>", cookiecutter) }}``: the extension renders the template
from ``templates/`` (cookiecutter's loader also searches ``../templates``) with the context
builder would use, so imports between templates and the ``py``/``json``/``md`` filters work
unchanged. Values that are not simple text or numbers (the model's description, the samples,
lists) are not prompted for: the export computes them from the pattern's sample model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from builder_core import portable
from builder_core.generate import (
    MODEL_KEYS,
    TEMPLATE_SUFFIX,
    PlannedFile,
    RenderedProject,
    render_project,
)
from builder_core.output import FileContent, read_bytes, write_tree
from builder_core.patterns import IGNORED_NAMES, TEMPLATE_DIR, TEMPLATE_FILES_DIR, template_tree

PROJECT_DIR = "{{cookiecutter.name}}"
TEMPLATES_DIR = "templates"
EXTENSION_MODULE = "builder_extension"
# Only an export holds it: what lets --force tell an earlier export from a folder of the user's.
EXPORT_MARKER = f"{EXTENSION_MODULE}.py"
JINJA_MARKS = ("{{", "{%", "{#")
PLAIN_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
USAGE = """\
# cookiecutter template of builder's {pattern} pattern

Exported by builder {version} (templates {template_version}); it renders the same files as
`builder --pattern {pattern}` given the same variables.

    cookiecutter {folder}

cruft works the same way once this folder is in a git repository (`cruft create <its URL>`),
and `cruft update` then brings later exports into the generated projects.

The service is generated around the pattern's sample model. The files under `templates/` are
builder's own templates; `builder_extension.py` gives them builder's filters and context.
"""


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote."""

    destination: Path
    pattern: str
    files: int
    prompts: tuple[str, ...]
    # Where ``force`` moved the folder that was at ``destination`` before, if there was one.
    previous: Path | None = None


def export_cookiecutter(
    *,
    pattern: str = "web-single",
    destination: Path,
    variable_file: Path | None = None,
    force: bool = False,
    template_root: Path | None = None,
    pattern_path: Sequence[Path] = (),
) -> ExportResult:
    """Write ``pattern`` as a cookiecutter template into the new folder ``destination``.

    :param pattern: the pattern to export (see :func:`pattern_names`).
    :param destination: the folder to create; refused if it exists, unless ``force``.
    :param variable_file: the variables whose values become cookiecutter's defaults.
    :param force: replace an earlier export at ``destination`` (moved aside, not deleted).
    :param template_root: a folder laid out like the packaged template data, used instead of it.
    :param pattern_path: folders of patterns of your own (see :func:`build`); the export holds
        the pattern's templates and builder's bases they extend, so it needs neither afterwards.
    :raises BuilderError: a subclass naming what is wrong; nothing is left behind.
    """
    project = render_project(
        pattern=pattern,
        variable_file=variable_file,
        template_root=template_root,
        pattern_path=pattern_path,
    )
    kinds = prompted_kinds(project)
    tree, copied = _project_tree(project, kinds)
    files = {**_template_sources(project), **tree}
    settings = _cookiecutter_json(project, kinds, copied)
    files[PurePosixPath("cookiecutter.json")] = FileContent(settings.encode(), 0o644)
    extension = read_bytes(Path(portable.__file__))
    files[PurePosixPath(f"{EXTENSION_MODULE}.py")] = FileContent(extension, 0o644)
    files[PurePosixPath("README.md")] = FileContent(_usage(project, destination), 0o644)
    previous = write_tree(files, destination, force=force, marker=EXPORT_MARKER)
    return ExportResult(destination, project.pattern.name, len(files), tuple(kinds), previous)


def prompted_kinds(project: RenderedProject) -> dict[str, str]:
    """The variables cookiecutter prompts for, with the type each answer is converted to."""
    fields = type(project.variables).model_fields
    kinds = {}
    for key, value in project.variables.model_dump(mode="json").items():
        if key in MODEL_KEYS:
            continue  # read from the sample model: changing one would contradict the model
        if fields[key].default is None:
            kinds[key] = "optional"
        elif isinstance(value, bool | int | float | str):
            kinds[key] = type(value).__name__
    return kinds


def _project_tree(
    project: RenderedProject, kinds: dict[str, str]
) -> tuple[dict[PurePosixPath, FileContent], list[str]]:
    """The ``{{cookiecutter.name}}`` folder, and the paths cookiecutter must copy unrendered."""
    tree: dict[PurePosixPath, FileContent] = {}
    copied: list[str] = []
    for item in project.files:
        path = _export_path(item, kinds)
        content = project.contents[item.path]
        if item.action == "copy":
            tree[PurePosixPath(PROJECT_DIR, path)] = content
            copied.append(_glob_literal(path))
            continue
        call = (
            f"builder_render({json.dumps(item.source)}, cookiecutter)"
            if item.action == "render"
            else "builder_answers(cookiecutter)"
        )
        # No newline after the call: the file is exactly what the template renders.
        tree[PurePosixPath(PROJECT_DIR, path)] = FileContent(
            f"{{{{ {call} }}}}".encode(), content.mode
        )
    return tree, copied


def _export_path(item: PlannedFile, kinds: dict[str, str]) -> str:
    """The output path with prompted variables left for cookiecutter to fill in.

    A path that uses anything else (a filter, a variable read from the model) is written as
    builder rendered it.
    """

    def prompted(match: re.Match[str]) -> str:
        key = match[1]
        return f"{{{{ cookiecutter.{key} }}}}" if key in kinds else match[0]

    text = PLAIN_VARIABLE.sub(prompted, item.path_template)
    rest = re.sub(r"\{\{ cookiecutter\.[A-Za-z0-9_]+ \}\}", "", text)
    if not item.path_template or any(mark in rest for mark in JINJA_MARKS):
        return str(item.path)
    return text


def _glob_literal(path: str) -> str:
    """``path`` as an fnmatch pattern that matches only itself."""
    return re.sub(r"([*?\[])", r"[\1]", path)


def _template_sources(project: RenderedProject) -> dict[PurePosixPath, FileContent]:
    """Every template a rendered file uses, and everything they may import, under templates/.

    Each is stored under its template name, a pattern-path pattern's under ``external/<name>/``.
    """
    pattern = project.pattern
    names = {item.source for item in project.files if item.action == "render"}
    for layer in pattern.layers:
        folder = layer.root / TEMPLATE_FILES_DIR
        names |= {
            f"{layer.prefix}{TEMPLATE_FILES_DIR}/{path.relative_to(folder).as_posix()}"
            for path in folder.rglob("*")
            if path.is_file()
            and not IGNORED_NAMES.intersection(path.parts)
            and path.suffix != ".pyc"
        }
        # The bases a pattern's own template/ files extend, though they render nothing themselves.
        names |= {
            f"{layer.prefix}{TEMPLATE_DIR}/{relative.as_posix()}"
            for relative in template_tree(layer)
            if relative.suffix == TEMPLATE_SUFFIX
        }
    return {
        PurePosixPath(TEMPLATES_DIR, name): FileContent(read_bytes(pattern.locate(name)), 0o644)
        for name in sorted(names)
    }


def _cookiecutter_json(project: RenderedProject, kinds: dict[str, str], copied: list[str]) -> str:
    """``cookiecutter.json``: the prompts first, then what builder computed, unprompted."""
    values = project.variables.model_dump(mode="json")
    settings: dict[str, Any] = {key: _default(values[key], kind) for key, kind in kinds.items()}
    settings[portable.EXPORT_KEY] = {
        "context": project.context,
        "kinds": kinds,
        "variables": list(project.answers["variables"]),
        "answers": {key: value for key, value in project.answers.items() if key != "variables"},
    }
    settings["_extensions"] = [f"{EXTENSION_MODULE}.BuilderExtension"]
    settings["_copy_without_render"] = copied
    settings["_new_lines"] = "\n"
    return json.dumps(settings, indent=2, ensure_ascii=False) + "\n"


def _default(value: Any, kind: str) -> Any:
    """A prompt's default as cookiecutter reads it: it renders text defaults as templates."""
    if kind == "optional":
        return "" if value is None else value
    if isinstance(value, str) and any(mark in value for mark in JINJA_MARKS):
        return "{% raw %}" + value + "{% endraw %}"
    return value


def _usage(project: RenderedProject, destination: Path) -> bytes:
    answers = project.answers
    return USAGE.format(
        pattern=project.pattern.name,
        version=answers["builder_version"],
        template_version=answers["template_version"],
        folder=destination.name,
    ).encode()
