"""Code that also runs without builder: inside an exported cookiecutter template.

``builder export-cookiecutter`` ships this very file as the template's local Jinja extension, so it
imports only the standard library, Jinja2 and PyYAML (all three are cookiecutter's own
dependencies), never ``builder_core``. Keeping the filters and the answers format here means builder
and cookiecutter render with the same code, and the cookiecutter test compares the results.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import jinja2
import yaml
from jinja2.ext import Extension

ANSWERS_HEADER = (
    "# Written by builder when this project was generated; upgrades read it. Do not edit.\n"
)
# The key of cookiecutter.json that carries what builder computed: cookiecutter copies keys
# starting with one underscore as they are, without prompting or rendering them.
EXPORT_KEY = "_builder"
# The generated code's line length (its pyproject.toml), for literals laid out over lines.
LINE_LENGTH = 100
TRUE_WORDS = frozenset({"1", "true", "yes", "y", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "n", "off"})


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


def to_python_block(value: Any, column: int = 0, indent: int = 0, trailing: int = 0) -> str:
    """``to_python``, laid out as the formatter of the generated code lays it out.

    A list or dict that does not fit within the line length from ``column`` (where it starts,
    with ``trailing`` characters after it) has one item per line, each laid out the same way,
    and a trailing comma.
    """
    flat = to_python(value)
    fits = column + len(flat) + trailing <= LINE_LENGTH
    if fits or not isinstance(value, list | tuple | dict) or not value:
        return flat
    inner = " " * (indent + 4)
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            head = f"{to_python(key)}: "
            items.append(head + to_python_block(item, len(inner) + len(head), indent + 4, 1))
        opening, closing = "{", "}"
    else:
        items = [to_python_block(item, len(inner), indent + 4, 1) for item in value]
        opening, closing = "[", "]"
    lines = "".join(f"{inner}{item},\n" for item in items)
    return f"{opening}\n{lines}{' ' * indent}{closing}"


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


# Every filter the templates use, for builder's environment and the exported extension alike.
FILTERS: dict[str, Callable[..., str]] = {
    "py": to_python,
    "py_block": to_python_block,
    "json": to_json,
    "md": to_markdown_text,
}


class _IndentedDumper(yaml.SafeDumper):
    """Indent lists under their key, as yamllint and most editors expect."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def dump_answers(record: Mapping[str, Any]) -> str:
    """The text of a project's ``.builder-answers.yml`` for ``record``."""
    # A JSON round trip turns cookiecutter's OrderedDicts into plain dicts, keeping their order.
    plain = json.loads(json.dumps(record))
    dumped = yaml.dump(
        plain, Dumper=_IndentedDumper, sort_keys=False, default_flow_style=False, width=100
    )
    return ANSWERS_HEADER + dumped


def _typed(value: Any, kind: str, key: str) -> Any:
    """Give a cookiecutter answer (rendered to text by cookiecutter) its variable's type back."""
    if kind == "optional":
        return None if value is None or str(value).strip() == "" else str(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in TRUE_WORDS | FALSE_WORDS:
            return word in TRUE_WORDS
        raise ValueError(f"cookiecutter.{key}: {value!r} is not yes or no")
    try:
        if kind == "int" and not isinstance(value, bool):
            return int(str(value).strip())
        if kind == "float" and not isinstance(value, bool):
            return float(str(value).strip())
    except ValueError:
        raise ValueError(f"cookiecutter.{key}: {value!r} is not a number ({kind})") from None
    if kind == "str":
        return str(value)
    raise ValueError(f"cookiecutter.{key}: {value!r} cannot be used as {kind}")


def context_from_cookiecutter(cookiecutter: Mapping[str, Any]) -> dict[str, Any]:
    """The context builder renders with, from cookiecutter's answers and the exported values."""
    exported = cookiecutter[EXPORT_KEY]
    context: dict[str, Any] = json.loads(json.dumps(exported["context"]))
    for key, kind in exported["kinds"].items():
        context[key] = _typed(cookiecutter[key], kind, key)
    # Derived from prompted values, so computed here as builder's Variables.image does.
    context["image"] = f"{context['image_repository'] or context['name']}:{context['image_tag']}"
    return context


def answers_from_cookiecutter(cookiecutter: Mapping[str, Any]) -> str:
    """The answers file builder would have written for the same values."""
    exported = cookiecutter[EXPORT_KEY]
    context = context_from_cookiecutter(cookiecutter)
    record = dict(exported["answers"])
    record["variables"] = {key: context[key] for key in exported["variables"]}
    return dump_answers(record)


class BuilderExtension(Extension):
    """Cookiecutter's local extension: builder's filters, and a renderer for its templates.

    Each file of the exported project is the one line ``{{ builder_render("<template>",
    cookiecutter) }}``: the template itself stays verbatim under ``templates/`` (cookiecutter's
    loader also searches ``../templates``), and renders with the same context as in builder.
    """

    def __init__(self, environment: jinja2.Environment) -> None:
        super().__init__(environment)
        environment.filters.update(FILTERS)

        def builder_render(name: str, cookiecutter: Mapping[str, Any]) -> str:
            template = environment.get_template(name)
            return template.render(context_from_cookiecutter(cookiecutter))

        environment.globals["builder_render"] = builder_render
        environment.globals["builder_answers"] = answers_from_cookiecutter
