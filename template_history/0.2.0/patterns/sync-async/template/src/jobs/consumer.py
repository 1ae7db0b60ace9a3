"""The workers' side of the queue: take a job, start it, finish it, adopt abandoned ones.

Delivery is at least once: an entry read by a worker stays pending until that worker finishes it.
A job runs again only when its worker went silent for ``CLAIM_IDLE_MS`` (it died, or hung); the
finishing script refuses a worker that no longer holds the entry, so one result is recorded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
from redis import Redis
from redis.exceptions import ResponseError

from src.jobs.config import QueueSettings
from src.jobs.store import FINISH, GROUP, START, STREAM, job_key

# Seconds a socket may wait beyond a blocking read's own wait before the read counts as failed.
READ_MARGIN_SECONDS = 2.0


@dataclass(frozen=True)
class Delivery:
    """One stream entry handed to this worker, and the job it names."""

    entry_id: str
    job_id: str


@dataclass(frozen=True)
class Start:
    """Whether to run a job: ``running`` with its rows, or why not."""

    outcome: str
    rows: Any = None


class Consumer:
    """One worker's membership of the consumer group."""

    def __init__(self, redis: Redis, settings: QueueSettings, name: str) -> None:
        self.name = name
        self._redis = redis
        self._settings = settings
        self._start = redis.register_script(START)
        self._finish = redis.register_script(FINISH)
        # Where the next search for abandoned entries continues in the pending list, and when:
        # after a search through all of it found nothing, not before the next blocking read's end.
        self._cursor = "0-0"
        self._adopt_at = 0.0

    @classmethod
    def connect(cls, settings: QueueSettings, name: str) -> Consumer:
        """A consumer called ``name``; the first command opens the connection."""
        timeout = settings.redis_timeout_ms / 1000
        redis = Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=timeout,
            socket_timeout=settings.block_ms / 1000 + READ_MARGIN_SECONDS,
            # CLIENT LIST then tells which connection is which worker.
            client_name=name,
        )
        return cls(redis, settings, name)

    def join(self) -> None:
        """Create the group if it does not exist; it reads the stream from its first entry."""
        try:
            self._redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise

    def take(self) -> Delivery | None:
        """An abandoned job if there is one, else a new one (waiting up to ``BLOCK_MS``)."""
        try:
            adopted = self._adopt() if time.monotonic() >= self._adopt_at else None
            return adopted or self._read()
        except ResponseError as err:
            # A Redis that restarted empty has no group: make it again, then read.
            if "NOGROUP" not in str(err):
                raise
            self.join()
            return None

    def _adopt(self) -> Delivery | None:
        cursor, entries, *_ = self._redis.xautoclaim(
            STREAM, GROUP, self.name, self._settings.claim_idle_ms, self._cursor, count=1
        )
        self._cursor = cursor.decode()
        if not entries and self._cursor == "0-0":
            self._adopt_at = time.monotonic() + self._settings.block_ms / 1000
        return self._delivery(entries)

    def _read(self) -> Delivery | None:
        reply = self._redis.xreadgroup(
            GROUP, self.name, {STREAM: ">"}, count=1, block=self._settings.block_ms
        )
        return self._delivery(reply[0][1]) if reply else None

    def _delivery(self, entries: list[Any]) -> Delivery | None:
        if not entries:
            return None
        entry_id, fields = entries[0]
        job = (fields or {}).get(b"job")
        if job is None:
            # Not a job entry (or one whose body is gone): nothing to run, so let it go.
            self._redis.xack(STREAM, GROUP, entry_id)
            self._redis.xdel(STREAM, entry_id)
            return None
        return Delivery(entry_id.decode(), job.decode())

    def start(self, delivery: Delivery) -> Start:
        """Mark the job running and get its rows, unless it expired, ended, or ran too often."""
        args = [self.name, f"{time.time():.6f}", self._settings.max_attempts]
        reply = self._start(keys=[job_key(delivery.job_id)], args=args)
        outcome = reply[0].decode()
        return Start(outcome, orjson.loads(reply[1]) if outcome == "running" else None)

    def finish(self, delivery: Delivery, fields: dict[str, str | bytes]) -> bool:
        """Record ``fields``, acknowledge and delete the entry, in one step.

        False when this worker no longer holds the entry: nothing was written.
        """
        pairs = [item for pair in fields.items() for item in pair]
        args = [GROUP, self.name, delivery.entry_id, self._settings.job_ttl_seconds, *pairs]
        return bool(self._finish(keys=[STREAM, job_key(delivery.job_id)], args=args))

    def leave(self) -> None:
        """Leave the group on a clean shutdown, if this worker holds nothing any more."""
        held = self._redis.xpending_range(STREAM, GROUP, "-", "+", 1, consumername=self.name)
        if not held:
            self._redis.xgroup_delconsumer(STREAM, GROUP, self.name)

    def close(self) -> None:
        """Close the connections."""
        self._redis.close()
