"""Settings of the job queue, shared by the proxy and the workers, read from the environment.

The defaults are the values the service was generated with; the Redis URL's default names the
``redis`` host of docker-compose.yml and of the Kubernetes manifests, so a local run sets
``REDIS_URL`` (for example ``redis://127.0.0.1:6379/0``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from src.app.config import PROJECT_ROOT, positive_int

SLOW_MODEL_FILE_NAME = "slow_model.onnx"
# Every Redis key of this service starts with it, so several services can share one Redis.
KEY_PREFIX = "sync-async"
DEFAULT_REDIS_URL = "redis://redis:6379/0"


@dataclass(frozen=True)
class QueueSettings:
    """What the proxy and the workers read from their environment about the job queue."""

    redis_url: str
    # How long a job's record lives once queued, and again once finished.
    job_ttl_seconds: int
    # Jobs waiting or running beyond which POST /predict queues nothing (and says so).
    max_queue_length: int
    # Connect and command timeout towards Redis: a slow Redis must not slow the fast answer.
    redis_timeout_ms: int
    # A job held this long by a silent worker is taken over by another one.
    claim_idle_ms: int
    # Starts of one job after which it is marked failed instead of being run again.
    max_attempts: int
    # How long a worker waits for a new job before it looks for abandoned ones again.
    block_ms: int
    slow_model_filepath: Path
    heartbeat_file: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> QueueSettings:
        """Read the settings; a bad value is a SettingsError naming the variable."""
        env = os.environ if environ is None else environ
        default_heartbeat = Path(tempfile.gettempdir()) / f"{KEY_PREFIX}-worker.heartbeat"
        return cls(
            redis_url=env.get("REDIS_URL", DEFAULT_REDIS_URL),
            job_ttl_seconds=positive_int(env, "JOB_TTL_SECONDS", 3600),
            max_queue_length=positive_int(env, "MAX_QUEUE_LENGTH", 10000),
            redis_timeout_ms=positive_int(env, "REDIS_TIMEOUT_MS", 250),
            claim_idle_ms=positive_int(env, "CLAIM_IDLE_MS", 30000),
            max_attempts=positive_int(env, "MAX_ATTEMPTS", 3),
            block_ms=positive_int(env, "BLOCK_MS", 1000),
            slow_model_filepath=Path(
                env.get("SLOW_MODEL_FILEPATH", PROJECT_ROOT / "models" / SLOW_MODEL_FILE_NAME)
            ),
            heartbeat_file=Path(env.get("HEARTBEAT_FILE", default_heartbeat)),
        )

    @property
    def heartbeat_max_age(self) -> float:
        """Seconds after which a silent worker counts as dead: by then its job is reclaimed."""
        return max(self.claim_idle_ms, 3 * self.block_ms) / 1000
