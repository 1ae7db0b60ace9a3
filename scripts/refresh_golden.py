#!/usr/bin/env python3
"""Regenerate ``tests/golden/<pattern>/`` from the current templates and default variables.

Run it after changing a template, then read ``git diff tests/golden`` before committing: the diff
is exactly what every newly generated service will look like differently.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from builder_core import build, pattern_names  # noqa: E402 - needs the checkout on sys.path

GOLDEN = REPO / "tests" / "golden"


def refresh(pattern: str) -> Path:
    """Generate ``pattern`` with the default variables and replace its golden tree."""
    with tempfile.TemporaryDirectory() as scratch:
        generated = build(pattern=pattern, name=pattern, output_dir=Path(scratch)).target
        destination = GOLDEN / pattern
        shutil.rmtree(destination, ignore_errors=True)
        shutil.copytree(generated, destination)
    return destination


def main() -> None:
    """Refresh every pattern's golden tree (or only those named on the command line)."""
    for pattern in sys.argv[1:] or pattern_names():
        print(f"refreshed {refresh(pattern).relative_to(REPO)}")


if __name__ == "__main__":
    main()
