"""The version of the templates, and the policy on which older versions can be upgraded.

The template version is separate from the package version: it changes when what a generated
project contains changes, and every project records the one it was generated with.
"""

from __future__ import annotations

import re

from builder_core.errors import TemplateVersionError

TEMPLATE_VERSION = "0.3.0"
VERSION = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")

Version = tuple[int, int, int]


def parse_version(text: str, where: str) -> Version:
    """``"1.2.3"`` as ``(1, 2, 3)``; anything else is a TemplateVersionError naming ``where``."""
    match = VERSION.match(text)
    if not match:
        raise TemplateVersionError(f"{where}: {text!r} is not a version such as 1.2.3")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def supported_lines(current: Version, older: list[Version]) -> list[tuple[int, int]]:
    """The latest two minor lines: the current one and the newest older line available."""
    lines = [(current[0], current[1])]
    below = sorted({(major, minor) for major, minor, _ in older if (major, minor) < lines[0]})
    return lines + below[-1:]


def show_lines(lines: list[tuple[int, int]]) -> str:
    """``[(0, 2), (0, 1)]`` as ``0.2.x and 0.1.x``."""
    return " and ".join(f"{major}.{minor}.x" for major, minor in lines)
