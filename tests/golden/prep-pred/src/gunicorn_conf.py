"""The gunicorn settings that take Python: logging, and the metrics files of the workers.

run.sh passes ``--config python:src.gunicorn_conf``; every other setting is on its command line.
Gunicorn's master imports this module, so it stays light: no FastAPI, no model.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from prometheus_client import multiprocess

from src.app.logs import log_settings, logging_config
from src.release.state import StateDir

# Applied once by the master at start-up; the workers inherit it when they are forked.
logconfig_dict = logging_config(*log_settings(os.environ))


def child_exit(_server: Any, worker: Any) -> None:
    """A worker is gone: drop its live gauges (its counts stay in the totals of /metrics), and
    its mark of being ready, since its pid may be reused by a worker not yet ready."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
    state = StateDir.from_env()
    if state is not None:
        state.forget(worker.pid)


def on_exit(_server: Any) -> None:
    """The service stops: its metrics files go too, so that the next start counts from zero."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        return
    for path in Path(folder).glob("*.db"):
        path.unlink(missing_ok=True)
    # run.sh made the folder; one given in the environment may hold other files: it then stays.
    with contextlib.suppress(OSError):
        Path(folder).rmdir()
