"""Loading the small YAML files a user hands builder, with limits that keep a hostile file cheap.

``vars.yaml``, correspond files, pattern metadata and answers files are a few kilobytes of keys and
plain values. Anything far beyond that (a huge file, deep nesting, a flood of values, a 5,000-digit
integer) is refused before it costs seconds or gigabytes. So are duplicate keys, which YAML loaders
resolve silently (the last one wins), and anchors and aliases: nothing expands them while loading,
but validating or dumping the loaded data would copy every reference (the "billion laughs").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent, Event, NodeEvent
from yaml.nodes import MappingNode, Node

MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 50
MAX_NODES = 50_000
MAX_INT_CHARS = 100
MAX_PROBLEM_CHARS = 160
MERGE_TAG = "tag:yaml.org,2002:merge"
INT_TAG = "tag:yaml.org,2002:int"


class FileTooLargeError(Exception):
    """The file holds more than ``limit`` bytes (only ``limit + 1`` of them were read)."""

    def __init__(self, limit: int) -> None:
        shown = f"{limit >> 20} MiB" if limit % (1 << 20) == 0 else f"{limit} bytes"
        super().__init__(f"is larger than {shown}; refusing to read it")
        self.limit = limit


def read_text(path: Path, limit: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of ``path``, reading no more than ``limit + 1`` bytes of it.

    :raises FileTooLargeError: the file holds more than ``limit`` bytes.
    :raises OSError: the file cannot be opened or read.
    :raises UnicodeDecodeError: the file is not UTF-8.
    """
    # Not stat(): a pipe or a device has no size, and a file can grow between stat and read.
    with path.open("rb") as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise FileTooLargeError(limit)
    return data.decode("utf-8")


def load(text: str) -> Any:
    """The single YAML document in ``text``: plain mappings, lists and scalars, within the limits.

    :raises yaml.YAMLError: the text is not YAML or breaks a limit; :func:`describe` words it.
    """
    # Checked here rather than left to the parser so that the message has a line with libyaml too.
    bad = yaml.reader.Reader.NON_PRINTABLE.search(text)
    if bad:
        mark = yaml.Mark("<text>", bad.start(), text.count("\n", 0, bad.start()), 0, None, 0)
        problem = f"character #x{ord(bad.group()):04x} is not allowed in YAML"
        raise yaml.MarkedYAMLError(problem=problem, problem_mark=mark)
    loader = _LOADER(text)
    try:
        return loader.get_single_data()
    except (ValueError, OverflowError) as err:  # from constructing a value nothing else caught
        raise ConstructorError(problem=_clip(f"cannot read a value: {err}")) from err
    finally:
        loader.dispose()


def describe(err: yaml.YAMLError) -> tuple[int | None, str]:
    """The 1-based line ``err`` points at (``None`` if unknown) and its problem, on one line."""
    if not isinstance(err, yaml.MarkedYAMLError):
        return None, _clip(str(err))
    mark = err.problem_mark or err.context_mark
    return (mark.line + 1 if mark else None), _clip(err.problem or err.context or str(err))


def _clip(text: str) -> str:
    """One line, and short: YAML problems quote the offending text, which may be huge."""
    line = " ".join(text.split())
    return line if len(line) <= MAX_PROBLEM_CHARS else line[: MAX_PROBLEM_CHARS - 3] + "..."


class _LimitedComposer(Composer):
    """Refuses anchors and aliases, nesting deeper than MAX_DEPTH and more than MAX_NODES nodes."""

    peek_event: Callable[[], Event | None]  # from the parser the loader class is mixed with
    _depth = 0
    _nodes = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        """The next node, unless composing it would break a limit (a ComposerError at its line)."""
        event = self.peek_event()
        if isinstance(event, NodeEvent) and event.anchor is not None:
            sign = "*" if isinstance(event, AliasEvent) else "&"
            self._refuse(f"anchors and aliases are not allowed (found {sign}{event.anchor})", event)
        self._nodes += 1
        if self._nodes > MAX_NODES:
            self._refuse(f"more than {MAX_NODES} values", event)
        if self._depth >= MAX_DEPTH:
            self._refuse(f"nested more than {MAX_DEPTH} levels deep", event)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    @staticmethod
    def _refuse(problem: str, event: Event | None) -> None:
        found = event.start_mark if event is not None else None
        mark = None
        if found is not None:  # libyaml's marks are a class of their own; the line is what counts
            mark = yaml.Mark("<text>", found.index, found.line, found.column, None, 0)
        raise ComposerError(problem=_clip(problem), problem_mark=mark)


class _StrictConstructor(SafeConstructor):
    """Refuses duplicate keys and overlong integers; a value that cannot be built names its line."""

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        """The value of ``node``; a ValueError or OverflowError becomes an error at its line."""
        # Before int() sees it: a huge integer takes quadratic time (sexagesimal) or memory (hex).
        if node.tag == INT_TAG and len(node.value) > MAX_INT_CHARS:
            problem = f"an integer of {len(node.value)} characters (at most {MAX_INT_CHARS})"
            raise ConstructorError(problem=problem, problem_mark=node.start_mark)
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as err:
            problem = _clip(f"cannot read this value: {err}")
            raise ConstructorError(problem=problem, problem_mark=node.start_mark) from err

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        """The mapping of ``node``, refusing a key given twice (``<<`` merge keys aside)."""
        first_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                continue
            # Built now, the key is cached: the base class reuses it rather than build it again.
            key = self.construct_object(key_node, deep=deep)
            try:
                first = first_lines.get(key)
            except TypeError:
                continue  # unhashable: the base class refuses it with its own message
            if first is not None:
                problem = _clip(f"duplicate key {repr(key)[:60]} (first on line {first})")
                raise ConstructorError(problem=problem, problem_mark=key_node.start_mark)
            first_lines[key] = key_node.start_mark.line + 1
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


class _Loader(Protocol):
    def get_single_data(self) -> Any: ...
    def dispose(self) -> None: ...


class _PythonLoader(_LimitedComposer, _StrictConstructor, yaml.SafeLoader):
    """The limits on PyYAML's own parser, for an installation without libyaml."""


_LOADER: Callable[[str], _Loader] = _PythonLoader

if yaml.__with_libyaml__:

    class _LibyamlLoader(_LimitedComposer, _StrictConstructor, yaml.CSafeLoader):
        """libyaml parses (a megabyte in milliseconds); Python composes, where the limits are."""

        def __init__(self, stream: str) -> None:
            yaml.CSafeLoader.__init__(self, stream)
            Composer.__init__(self)

    _LOADER = _LibyamlLoader
