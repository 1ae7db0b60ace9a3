"""One strict Jinja2 environment, and the filters that make values safe literals in code."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2

from builder_core.errors import ForbiddenPathError, TemplateError

# The filters live where an exported cookiecutter template can use them too.
from builder_core.portable import FILTERS, to_json, to_markdown_text, to_python

__all__ = [
    "PatternLoader",
    "make_environment",
    "render_path",
    "render_template",
    "safe_relative_path",
    "to_json",
    "to_markdown_text",
    "to_python",
]


class PatternLoader(jinja2.BaseLoader):
    """Names under ``prefix`` from a pattern's own folder; every other name from the data root.

    A pattern from the pattern path is not under the data root: its files are named
    ``external/<name>/...``, a prefix that no packaged name has, so neither side can shadow the
    other, and its templates reach builder's bases by their usual names.
    """

    def __init__(self, prefix: str, folder: Path, common: jinja2.BaseLoader) -> None:
        self.prefix = prefix
        self.own = jinja2.FileSystemLoader(str(folder))
        self.common = common

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        """The source of ``template``, its file, and whether it is still up to date."""
        if not template.startswith(self.prefix):
            return self.common.get_source(environment, template)
        try:
            return self.own.get_source(environment, template.removeprefix(self.prefix))
        except jinja2.TemplateNotFound:
            # Under its full name, the one the template that asked for it used.
            raise jinja2.TemplateNotFound(template) from None


def make_environment(root: Path, *, own: tuple[str, Path] | None = None) -> jinja2.Environment:
    """The environment every template of a build renders with, rooted at the template data.

    :param own: for a pattern from the pattern path, its template-name prefix and its folder.
    """
    loader: jinja2.BaseLoader = jinja2.FileSystemLoader(str(root))
    if own is not None:
        loader = PatternLoader(own[0], own[1], loader)
    env = jinja2.Environment(
        loader=loader,
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
