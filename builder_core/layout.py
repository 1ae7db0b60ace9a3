"""Where each output file of a pattern comes from: common, extended, replaced or the pattern's own.

A pattern's file at an output path the common layer also writes must say how it relates to the
common file: it extends (or includes) the common template and fills blocks, or ``pattern.yaml``
lists the path under ``replaces:`` with the reason. Anything else is refused, so no pattern
silently copies what every service shares.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from builder_core.errors import PackagingError

Kind = Literal["common", "extended", "replaced", "added", "omitted"]
REFERENCE = re.compile(r"\{%-?\s*(?:extends|include)\s+[\"']([^\"']+)[\"']")
BLOCK = re.compile(r"\{%-?\s*block\s+([A-Za-z_][A-Za-z0-9_]*)")
# A hook that is a variable the base reads (a list to merge, a value to use) rather than a block.
SET = re.compile(r"\{%-?\s*set\s+([A-Za-z_][A-Za-z0-9_]*)\s*=")


@dataclass(frozen=True)
class Origin:
    """One output file and how the pattern got it."""

    path: PurePosixPath
    kind: Kind
    source: str
    # For an extended file: the blocks it fills and variables it sets; for a replaced one: why.
    blocks: tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class LayerFile:
    """What a layer plans at one output path: its source template (relative to the data root)."""

    path: PurePosixPath
    source: str
    rendered: bool


def origins(
    locate: Callable[[str], Path],
    common: Mapping[PurePosixPath, LayerFile],
    own: Mapping[PurePosixPath, LayerFile],
    replaces: Mapping[str, str],
    omit: list[str],
    *,
    where: str,
) -> list[Origin]:
    """Classify every output path; an undeclared or needless replacement is a PackagingError.

    :param locate: the file a template name stands for (:meth:`Pattern.locate`).
    """
    found: dict[PurePosixPath, Origin] = {}
    for path, item in common.items():
        kind: Kind = "omitted" if str(path) in omit else "common"
        found[path] = Origin(path, kind, item.source)
    for path, item in own.items():
        found[path] = _own_origin(locate, item, common.get(path), replaces, where)
    stale = sorted(set(replaces) - {str(o.path) for o in found.values() if o.kind == "replaced"})
    if stale:
        raise PackagingError(
            f"{where}: replaces: {stale[0]}: the pattern does not replace that common file"
        )
    return [found[path] for path in sorted(found)]


def _own_origin(
    locate: Callable[[str], Path],
    item: LayerFile,
    base: LayerFile | None,
    replaces: Mapping[str, str],
    where: str,
) -> Origin:
    if base is None:
        return Origin(item.path, "added", item.source)
    text = locate(item.source).read_text(encoding="utf-8") if item.rendered else ""
    if item.rendered and base.source in REFERENCE.findall(text):
        hooks = BLOCK.findall(text) + [f"{name} (set)" for name in SET.findall(text)]
        return Origin(item.path, "extended", item.source, tuple(hooks))
    reason = replaces.get(str(item.path), "").strip()
    if not reason:
        raise PackagingError(
            f"{where}: {item.source} replaces the common {base.source} ({item.path}) without "
            "extending it: extend it and fill its blocks, or list the path under replaces: "
            "with the reason"
        )
    return Origin(item.path, "replaced", item.source, reason=reason)
