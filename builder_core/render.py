"""One strict Jinja2 environment, and the filters that make values safe literals in code."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import jinja2

from builder_core.errors import ForbiddenPathError, TemplateError

# The filters live where an exported cookiecutter template can use them too.
from builder_core.portable import FILTERS, to_json, to_markdown_text, to_python

__all__ = [
    "make_environment",
    "render_path",
    "render_template",
    "safe_relative_path",
    "to_json",
    "to_markdown_text",
    "to_python",
]


def make_environment(root: Path) -> jinja2.Environment:
    """The environment every template of a build renders with, rooted at the template data."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - the output is code and config, never HTML
    )
    env.filters.update(FILTERS)
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
