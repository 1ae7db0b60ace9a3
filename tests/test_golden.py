"""Every pattern's generated tree equals the reviewed golden copy, byte for byte and mode for mode.

A template change shows up here until ``python scripts/refresh_golden.py`` is run and the diff in
``tests/golden/`` is read and committed with it.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from builder_core import build, pattern_names

GOLDEN = Path(__file__).resolve().parent / "golden"


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Relative path → (bytes, permission bits) of every file under ``root``."""
    return {
        path.relative_to(root).as_posix(): (path.read_bytes(), path.stat().st_mode & 0o777)
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def describe_difference(name: str, want: bytes, got: bytes) -> str:
    """A unified diff for text, a size note for binary files."""
    try:
        lines = difflib.unified_diff(
            want.decode().splitlines(),
            got.decode().splitlines(),
            "golden",
            "generated",
            lineterm="",
        )
        return f"{name}:\n" + "\n".join(list(lines)[:40])
    except UnicodeDecodeError:
        return f"{name}: binary content differs ({len(want)} vs {len(got)} bytes)"


def test_every_pattern_has_a_golden_tree() -> None:
    assert sorted(path.name for path in GOLDEN.iterdir()) == pattern_names()


@pytest.mark.parametrize("pattern", pattern_names())
def test_generated_tree_matches_golden(pattern: str, tmp_path: Path) -> None:
    target = build(pattern=pattern, name=pattern, output_dir=tmp_path).target
    golden, generated = snapshot(GOLDEN / pattern), snapshot(target)
    assert sorted(generated) == sorted(golden), "file list differs: run scripts/refresh_golden.py"
    problems = [
        describe_difference(name, golden[name][0], generated[name][0])
        for name in golden
        if golden[name][0] != generated[name][0]
    ]
    problems += [
        f"{name}: mode {generated[name][1]:o}, golden {golden[name][1]:o}"
        for name in golden
        if golden[name][1] != generated[name][1]
    ]
    assert not problems, "\n".join(problems) + "\n(run scripts/refresh_golden.py, read the diff)"
