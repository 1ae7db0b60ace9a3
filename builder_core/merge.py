"""Three-way merge of one file: what the old templates made, what the user has, what is new.

The line merge itself is the ``merge3`` library's (the algorithm of bzr and breezy); this module
decides what each combination of present, absent, changed and binary files becomes, and writes
conflicts with the markers git and editors recognise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from merge3 import Merge3

from builder_core.output import FileContent

Status = Literal[
    "unchanged",  # the templates did not change the file: the user's copy stays as it is
    "updated",  # the user had not changed it: the template's new version replaces it
    "added",  # the templates added it
    "removed",  # the templates dropped it and the user had not changed it
    "merged",  # both changed it; the changes merged cleanly
    "conflict",  # both changed the same lines: written with conflict markers
    "kept-deleted",  # the user deleted it: it stays deleted although the template changed it
    "kept-yours",  # both changed it and it cannot be merged (binary, or dropped by the template)
    "moved",  # a template version moved it; otherwise unchanged (set by the upgrade, not here)
]


@dataclass(frozen=True)
class Labels:
    """The names the conflict markers give the two sides."""

    yours: str
    theirs: str


@dataclass(frozen=True)
class Outcome:
    """What one file becomes (``None``: absent) and why."""

    status: Status
    content: FileContent | None


def merge_file(
    base: FileContent | None,
    yours: FileContent | None,
    new: FileContent | None,
    labels: Labels,
) -> Outcome:
    """Merge one file; ``base`` is what the old templates generated, ``new`` the current ones."""
    if new == base:
        return Outcome("unchanged", yours)
    if yours == base:
        return Outcome(_template_status(base, new), new)
    if yours is None:
        return Outcome("kept-deleted", None)
    if new is None:
        return Outcome("kept-yours", yours)
    mode = new.mode if base is not None and yours.mode == base.mode else yours.mode
    if yours.data == new.data:
        return Outcome("merged", FileContent(yours.data, mode))
    texts = _texts(base, yours, new)
    if texts is None:
        return Outcome("kept-yours", yours)
    merged, conflicts = merge_text(*texts, labels)
    return Outcome("conflict" if conflicts else "merged", FileContent(merged.encode(), mode))


def _texts(
    base: FileContent | None, yours: FileContent, new: FileContent
) -> tuple[str, str, str] | None:
    """The three versions as text (no base: empty), or ``None`` when one is binary."""
    base_text = "" if base is None else _text(base.data)
    your_text, new_text = _text(yours.data), _text(new.data)
    if base_text is None or your_text is None or new_text is None:
        return None
    return base_text, your_text, new_text


def _template_status(base: FileContent | None, new: FileContent | None) -> Status:
    if base is None:
        return "added"
    return "removed" if new is None else "updated"


def _text(data: bytes) -> str | None:
    """The file as text, or ``None`` for a binary file (NUL bytes or not UTF-8)."""
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def merge_text(base: str, yours: str, new: str, labels: Labels) -> tuple[str, int]:
    """Merge by lines; return the text and how many conflicts it holds."""
    merger = Merge3(
        base.splitlines(keepends=True),
        yours.splitlines(keepends=True),
        new.splitlines(keepends=True),
    )
    lines: list[str] = []
    conflicts = 0
    for group in merger.merge_groups():
        if group[0] != "conflict":
            lines += group[1]
            continue
        conflicts += 1
        _, _, mine, theirs = group
        lines.append(f"<<<<<<< {labels.yours}\n")
        lines += _terminated(mine)
        lines.append("=======\n")
        lines += _terminated(theirs)
        lines.append(f">>>>>>> {labels.theirs}\n")
    return "".join(lines), conflicts


def _terminated(lines: Sequence[str]) -> list[str]:
    """The lines, the last one ended, so a marker never lands at the end of a line."""
    result = list(lines)
    if result and not result[-1].endswith("\n"):
        result[-1] += "\n"
    return result
