"""The proxy's side of the queue: submit a job, read one back, tell whether Redis answers.

A Redis that is down or slow must neither fail nor slow down the fast answer: every call has a
short timeout, and after a failure the client stops asking for ``RETRY_AFTER_SECONDS``, answering
"not queued" at once instead of paying the timeout on every request.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from src.jobs.config import QueueSettings
from src.jobs.store import ENQUEUE, STREAM, JobRecord, job_key, new_job_id

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1.0
# Not only RedisError: a host name that does not resolve fails (OSError) before redis-py wraps
# anything, and a Redis killed in the middle of a command can surface as other errors. The fast
# answer must never fail for the queue; cancellation (a BaseException) still goes through.
REDIS_ERRORS = (Exception,)
UNAVAILABLE = "the job queue is unavailable"


class QueueUnavailableError(Exception):
    """Redis did not answer (or did not answer in time)."""


@dataclass(frozen=True)
class Submission:
    """The outcome of queueing a job: its ID, or why there is none."""

    job_id: str | None
    detail: str | None


class JobClient:
    """Queues jobs for the workers and reads their records; one per proxy worker process."""

    def __init__(self, redis: Redis, settings: QueueSettings) -> None:
        self._redis = redis
        self._settings = settings
        self._enqueue = redis.register_script(ENQUEUE)
        self._retry_at = 0.0

    @classmethod
    def connect(cls, settings: QueueSettings) -> JobClient:
        """A client of ``settings.redis_url``; the first command opens the connection."""
        timeout = settings.redis_timeout_ms / 1000
        redis = Redis.from_url(
            settings.redis_url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # One quick retry replaces a pooled connection that a Redis restart closed.
            retry=Retry(NoBackoff(), 1),
        )
        return cls(redis, settings)

    async def submit(self, rows: Any) -> Submission:
        """Queue ``rows`` for the slow model; a failure is reported, never raised."""
        if self._backing_off():
            return Submission(None, f"{UNAVAILABLE}; the slow prediction was not queued")
        job_id = new_job_id()
        settings = self._settings
        args = [
            job_id,
            orjson.dumps(rows),
            f"{time.time():.6f}",
            settings.job_ttl_seconds,
            settings.max_queue_length,
        ]
        try:
            queued = await self._enqueue(keys=[STREAM, job_key(job_id)], args=args)
        except REDIS_ERRORS as err:
            self._failed(err)
            return Submission(None, f"{UNAVAILABLE}; the slow prediction was not queued")
        if not queued:
            detail = f"the job queue is full ({settings.max_queue_length} jobs)"
            return Submission(None, f"{detail}; the slow prediction was not queued")
        return Submission(job_id, None)

    async def fetch(self, job_id: str) -> JobRecord | None:
        """The job's record, or None when there is no such job (any more)."""
        if self._backing_off():
            raise QueueUnavailableError(UNAVAILABLE)
        try:
            fields = await self._redis.hgetall(job_key(job_id))
        except REDIS_ERRORS as err:
            self._failed(err)
            raise QueueUnavailableError(UNAVAILABLE) from err
        return JobRecord.from_hash(job_id, fields) if fields else None

    async def check(self) -> str | None:
        """None when Redis answers a PING, else why not; a success ends any back-off."""
        try:
            await self._redis.ping()
        except REDIS_ERRORS as err:
            self._failed(err)
            return UNAVAILABLE
        self._retry_at = 0.0
        return None

    async def close(self) -> None:
        """Close the connections."""
        await self._redis.aclose()

    def _backing_off(self) -> bool:
        return time.monotonic() < self._retry_at

    def _failed(self, err: Exception) -> None:
        # The error names host and port, never the password a URL may hold.
        logger.warning(
            "job queue unreachable, retrying in %.0f s: %s: %s",
            RETRY_AFTER_SECONDS,
            type(err).__name__,
            err,
        )
        self._retry_at = time.monotonic() + RETRY_AFTER_SECONDS
