"""The worker's sign of life, read by its probes (a worker serves no HTTP to probe).

The main loop writes a small JSON file at least once per blocking read: when it was written and
whether Redis answered. A file older than the heartbeat's maximum age means the loop is stuck.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

# The loop comes around at least every BLOCK_MS; writing more often would only cost disk I/O.
MIN_INTERVAL_SECONDS = 1.0


@dataclass(frozen=True)
class Beat:
    """One heartbeat: when, and whether Redis answered then."""

    time: float
    redis: bool


class Heartbeat:
    """Writes beats to ``path`` atomically, at most once a second unless the state changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last: Beat | None = None

    def beat(self, redis: bool) -> None:
        """Record that the loop is alive and whether Redis answered."""
        now = time.time()
        last = self._last
        if last is not None and last.redis == redis and now - last.time < MIN_INTERVAL_SECONDS:
            return
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        partial.write_text(json.dumps({"time": now, "redis": redis}), encoding="utf-8")
        partial.replace(self.path)
        self._last = Beat(now, redis)


def read_beat(path: Path) -> Beat | None:
    """The last beat written to ``path``, or None when there is none (yet)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Beat(float(raw["time"]), bool(raw["redis"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
