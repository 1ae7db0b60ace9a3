"""One strict Jinja2 environment, and the filters that make values safe literals in code."""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2

from builder_core.errors import ForbiddenPathError, TemplateError


def to_python(value: Any) -> str:
    """A Python literal for plain data (str, numbers, lists, dicts, None, bools).

    Strings use double quotes, as the formatter of the generated code writes them.
    """
    value = _defined(value)
    if isinstance(value, str):
        # A JSON string is a valid Python literal: the same escapes, and no others.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(to_python(item) for item in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{to_python(key)}: {to_python(item)}" for key, item in value.items())
        return "{" + ", ".join(pairs) + "}"
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    raise TypeError(f"cannot write {type(value).__name__} as a Python literal")


def to_json(value: Any) -> str:
    """Compact JSON; a JSON string is also a valid double-quoted YAML scalar."""
    return json.dumps(_defined(value), ensure_ascii=False)


MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]<>#|~])")
MARKDOWN_LINE_START = re.compile(r"^(\s*)([-+]|\d+\.)(?=\s)", re.MULTILINE)


def to_markdown_text(value: Any) -> str:
    """Free text as Markdown that shows the text itself: no emphasis, links, headings or HTML."""
    # CommonMark ends lines at \r too; one line ending keeps the line-start escapes complete.
    text = str(_defined(value)).replace("\r\n", "\n").replace("\r", "\n")
    text = MARKDOWN_SPECIALS.sub(r"\\\1", text)
    return MARKDOWN_LINE_START.sub(_escape_list_marker, text)


def _escape_list_marker(match: re.Match[str]) -> str:
    """Escape the list marker that starts a line, so the line stays plain text."""
    indent, marker = match[1], match[2]
    escaped = f"{marker[:-1]}\\." if marker.endswith(".") else f"\\{marker}"
    return indent + escaped


def _defined(value: Any) -> Any:
    # Filters receive an undefined value without StrictUndefined failing; make them fail the same.
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    return value


def make_environment(root: Path) -> jinja2.Environment:
    """The environment every template of a build renders with, rooted at the template data."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - the output is code and config, never HTML
    )
    env.filters["py"] = to_python
    env.filters["json"] = to_json
    env.filters["md"] = to_markdown_text
    return env


def render_template(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    """Render the template file ``name``; errors name it (and the line, where known)."""
    try:
        return env.get_template(name).render(context)
    except jinja2.UndefinedError as err:
        raise TemplateError(f"{name}: undefined variable: {err.message}") from err
    except jinja2.TemplateSyntaxError as err:
        raise TemplateError(
            f"{name} (line {err.lineno}): template syntax error: {err.message}"
        ) from err
    except jinja2.TemplateError as err:
        raise TemplateError(f"{name}: {err}") from err


def render_path(
    env: jinja2.Environment, text: str, context: dict[str, Any], where: str
) -> PurePosixPath:
    """Render an output path and make sure it stays inside the output folder."""
    # The book's mapping writes "{}/Dockerfile" for "<name>/Dockerfile": the folder is ours.
    text = text.removeprefix("{}/")
    try:
        rendered = env.from_string(text).render(context)
    except jinja2.TemplateError as err:
        raise TemplateError(f"{where}: cannot render the output path {text!r}: {err}") from err
    return safe_relative_path(rendered, where)


def safe_relative_path(text: str, where: str) -> PurePosixPath:
    """``text`` as a relative path with no ``..``; anything else is a ForbiddenPathError."""
    path = PurePosixPath(text.strip())
    if not text.strip() or path.is_absolute() or "\\" in text or ".." in path.parts:
        raise ForbiddenPathError(f"{where}: output path {text!r} leaves the output folder")
    if str(path) in ("", "."):
        raise ForbiddenPathError(f"{where}: output path {text!r} is empty")
    return path
