"""Redis as a shortcut the service can do without: every call is guarded by a circuit breaker.

When Redis fails or answers slower than its timeout, the breaker keeps it out of the request path
for a while and callers go on without it (uncached). Nothing here ever raises a Redis error into a
request: callers get :class:`CacheUnavailableError` and decide what "without" means.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

T = TypeVar("T")
CacheHealth = Literal["ok", "degraded"]


def redacted(url: str) -> str:
    """A Redis URL fit for a log line: no user name or password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class CircuitBreaker:
    """Keeps a failing Redis out of the request path.

    After a failure, calls are skipped for a pause that doubles with every failure in a row (up to
    ``max_pause`` seconds); when it is over, one call tries again while the others keep skipping.
    """

    def __init__(
        self,
        first_pause: float = 0.5,
        max_pause: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._first_pause = first_pause
        self._max_pause = max_pause
        self._clock = clock
        self._failures = 0
        self._retry_at = 0.0

    @property
    def healthy(self) -> bool:
        """No failure since the last success."""
        return self._failures == 0

    def allow(self) -> bool:
        """Whether to call Redis now."""
        if self._failures == 0:
            return True
        now = self._clock()
        if now < self._retry_at:
            return False
        # This caller makes the trial call; the others skip until it has an outcome.
        self._retry_at = now + self._pause()
        return True

    def succeeded(self) -> None:
        """A call worked: close the circuit."""
        self._failures = 0

    def failed(self) -> float:
        """A call failed: open the circuit; the pause before the next trial, in seconds."""
        self._failures += 1
        pause = self._pause()
        self._retry_at = self._clock() + pause
        return pause

    def _pause(self) -> float:
        doublings = min(self._failures - 1, 16)  # bounded: the float must not overflow
        return float(min(self._first_pause * 2**doublings, self._max_pause))


class CacheUnavailableError(Exception):
    """Redis cannot be used right now; the caller serves without it."""


class GuardedRedis:
    """A Redis client whose every call goes through a :class:`CircuitBreaker`."""

    def __init__(self, client: Redis, breaker: CircuitBreaker | None = None) -> None:
        self.client = client
        self._breaker = breaker or CircuitBreaker()

    @classmethod
    def connect(cls, url: str, timeout: float) -> GuardedRedis:
        """A client of the Redis at ``url``; no connection is made until it is first used."""
        client = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # One immediate retry: after a Redis restart each pooled connection fails once
            # ("Connection closed by server"); without it every stale connection would trip the
            # breaker again. A slow or absent Redis still costs at most two timeouts.
            retry=Retry(NoBackoff(), 1),
        )
        return cls(client)

    @property
    def health(self) -> CacheHealth:
        """``ok`` while Redis answers, ``degraded`` after a failure until it answers again."""
        return "ok" if self._breaker.healthy else "degraded"

    async def call(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """``operation``'s result; CacheUnavailableError when Redis fails or is resting."""
        if not self._breaker.allow():
            raise CacheUnavailableError("redis is resting after a failure")
        try:
            result = await operation()
        except (RedisError, OSError) as err:
            pause = self._breaker.failed()
            logger.warning(
                "redis %s failed (%s: %s); serving uncached, next try in %.1f s",
                what,
                type(err).__name__,
                err,
                pause,
            )
            raise CacheUnavailableError(str(err)) from err
        if not self._breaker.healthy:
            logger.warning("redis answers again; caching resumes")
        self._breaker.succeeded()
        return result

    async def check(self) -> CacheHealth:
        """Ping Redis (unless the breaker is resting) and report its health."""
        with suppress(CacheUnavailableError):
            await self.call("PING", self.client.ping)
        return self.health

    async def close(self) -> None:
        """Close the connections."""
        await self.client.aclose()
