#!/usr/bin/env python3
"""Copy the current template data into ``template_history/<TEMPLATE_VERSION>/``.

Run it before changing the templates for a new template version, so ``builder upgrade`` can still
regenerate what this version produced (see ``template_history/README.md``).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from builder_core.versions import TEMPLATE_VERSION  # noqa: E402 - needs the checkout on sys.path

DATA = ("template", "template_files", "patterns", "sample_models")
FILES = ("correspond_file_path.yaml", "vars.yaml", "migrations.yaml")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".DS_Store")


def freeze(destination: Path) -> None:
    """Copy every part of the template data into ``destination`` (which must not exist)."""
    destination.mkdir(parents=True)
    for name in DATA:
        shutil.copytree(REPO / name, destination / name, ignore=IGNORED)
    for name in FILES:
        shutil.copy2(REPO / name, destination / name)


def main() -> None:
    """Freeze the current version, refusing to overwrite an existing copy."""
    destination = REPO / "template_history" / TEMPLATE_VERSION
    if destination.exists():
        sys.exit(f"{destination.relative_to(REPO)} already exists; bump TEMPLATE_VERSION first?")
    freeze(destination)
    print(f"froze templates {TEMPLATE_VERSION} into {destination.relative_to(REPO)}")


if __name__ == "__main__":
    main()
