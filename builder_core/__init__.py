"""builder: turn one ``vars.yaml`` into a complete ML inference service.

The library API is :func:`build`, :func:`upgrade`, :func:`check` and
:func:`export_cookiecutter`; ``builder.py`` is only their command line.
"""

from builder_core.cookiecutter_export import ExportResult, export_cookiecutter
from builder_core.errors import BuilderError
from builder_core.generate import BuildResult, PlannedFile, build
from builder_core.patterns import pattern_names
from builder_core.upgrade import CheckResult, UpgradeResult, check, upgrade
from builder_core.versions import TEMPLATE_VERSION

__version__ = "0.1.0"

__all__ = [
    "TEMPLATE_VERSION",
    "BuildResult",
    "BuilderError",
    "CheckResult",
    "ExportResult",
    "PlannedFile",
    "UpgradeResult",
    "__version__",
    "build",
    "check",
    "export_cookiecutter",
    "pattern_names",
    "upgrade",
]
