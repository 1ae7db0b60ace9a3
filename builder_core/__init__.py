"""builder: turn one ``vars.yaml`` into a complete ML inference service.

The library API is :func:`build`; ``builder.py`` is only its command line.
"""

from builder_core.errors import BuilderError
from builder_core.generate import BuildResult, PlannedFile, build
from builder_core.patterns import pattern_names

__version__ = "0.1.0"

__all__ = ["BuildResult", "BuilderError", "PlannedFile", "__version__", "build", "pattern_names"]
