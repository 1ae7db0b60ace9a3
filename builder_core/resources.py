"""Where the generator's template data lives.

In an installed wheel the data sits in ``builder_core/data`` (put there by the build backend); in a
source checkout it is the repository root beside this package. Never the current directory.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path

from builder_core.errors import PackagingError

COMMON_MAPPING = "correspond_file_path.yaml"
DEFAULT_VARIABLES = "vars.yaml"
HISTORY_DIR = "template_history"
MIGRATIONS_FILE = "migrations.yaml"
PATTERNS_DIR = "patterns"
SAMPLE_MODELS_DIR = "sample_models"


@cache
def data_root() -> Path:
    """Return the absolute folder holding ``template/``, ``patterns/`` and the other data."""
    installed = Path(str(files("builder_core"))) / "data"
    if (installed / COMMON_MAPPING).is_file():
        return installed
    source = Path(__file__).resolve().parent.parent
    if (source / COMMON_MAPPING).is_file():
        return source
    raise PackagingError(
        f"template data not found in {installed} or {source}: the installation is incomplete"
    )
