"""The worker's probe: ``python -m src.worker.probe [--ready]``; exit status 0 means pass.

Live: the main loop wrote a heartbeat recently (it is not stuck in a job or a call).
Ready (``--ready``): live, and Redis answered the loop's last call.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from src.jobs.config import QueueSettings
from src.worker.heartbeat import read_beat


def check(settings: QueueSettings, ready: bool, now: float | None = None) -> str | None:
    """None when the probe passes, else why it fails."""
    beat = read_beat(settings.heartbeat_file)
    if beat is None:
        return f"no heartbeat in {settings.heartbeat_file} (still starting?)"
    age = (time.time() if now is None else now) - beat.time
    if age > settings.heartbeat_max_age:
        return f"last heartbeat {age:.0f} s ago (limit {settings.heartbeat_max_age:.0f} s)"
    if ready and not beat.redis:
        return "Redis did not answer the worker's last call"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Print why the probe fails, if it does; the exit status is what the probe reads."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ready", action="store_true", help="also require Redis to answer")
    args = parser.parse_args(argv)
    problem = check(QueueSettings.from_env(), args.ready)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
