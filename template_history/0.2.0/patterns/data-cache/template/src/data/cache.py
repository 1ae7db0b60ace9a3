"""The tensor cache: preprocessed items in Redis, and how the service keeps answering without it.

Entries are ``.npy`` bytes (dtype and shape travel with the data) under a key naming the service,
the preprocessing version and the store, each with a TTL. Redis is only ever a shortcut: when it
fails, the circuit breaker keeps it out of the request path for a while and requests are served
uncached.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from functools import cache
from typing import Literal, TypeVar
from urllib.parse import urlsplit

import numpy as np
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from src.ml.preprocess import DTYPE, PREPROCESS_VERSION

logger = logging.getLogger(__name__)

T = TypeVar("T")
# Fixed byte order, so that every machine reads the same entries.
STORED_DTYPE = np.dtype("<f4")
CacheHealth = Literal["ok", "degraded"]


def key_prefix(service: str, store_uri: str, side: int) -> str:
    """Keys name the service, the preprocessing and the store: changing any starts a fresh cache."""
    spec = f"{store_uri}\n{PREPROCESS_VERSION}\n{side}".encode()
    return f"{service}:tensor:v{PREPROCESS_VERSION}:{hashlib.sha256(spec).hexdigest()[:16]}:"


def encode_tensor(tensor: np.ndarray) -> bytes:
    """The bytes stored in Redis for one tensor: a little-endian ``.npy`` file."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(tensor, dtype=STORED_DTYPE), allow_pickle=False)
    return buffer.getvalue()


@cache
def _npy_header(shape: tuple[int, ...]) -> bytes:
    """What every entry of a tensor of ``shape`` starts with (the ``.npy`` header)."""
    size = int(np.prod(shape)) * STORED_DTYPE.itemsize
    return encode_tensor(np.zeros(shape, dtype=STORED_DTYPE))[:-size]


def decode_tensor(raw: bytes, shape: tuple[int, ...]) -> np.ndarray | None:
    """The tensor in ``raw``; None unless it is a finite float32 tensor of ``shape``.

    Entries are matched against the exact header this service writes instead of being parsed,
    which keeps decoding a hit to a few microseconds; anything else reads as a miss.
    """
    header = _npy_header(shape)
    if len(raw) != len(header) + int(np.prod(shape)) * STORED_DTYPE.itemsize:
        return None
    if not raw.startswith(header):
        return None
    tensor = np.frombuffer(raw, dtype=STORED_DTYPE, offset=len(header)).reshape(shape)
    return tensor.astype(DTYPE) if np.isfinite(tensor).all() else None


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
    """Redis cannot be used right now; the caller serves the item uncached."""


class TensorCache:
    """Preprocessed tensors by data ID, in Redis, behind a circuit breaker."""

    def __init__(
        self,
        client: Redis,
        prefix: str,
        ttl_seconds: int,
        shape: tuple[int, ...],
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self._client = client
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds
        self._shape = shape
        self._breaker = breaker or CircuitBreaker()

    @classmethod
    def connect(
        cls, url: str, prefix: str, ttl_seconds: int, shape: tuple[int, ...], timeout: float
    ) -> TensorCache:
        """A cache on the Redis at ``url``; no connection is made until it is first used."""
        client = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # One immediate retry: after a Redis restart each pooled connection fails once
            # ("Connection closed by server"); without it every stale connection would trip the
            # breaker again. A slow or absent Redis still costs at most two timeouts.
            retry=Retry(NoBackoff(), 1),
        )
        return cls(client, prefix, ttl_seconds, shape)

    @property
    def health(self) -> CacheHealth:
        """``ok`` while Redis answers, ``degraded`` after a failure until it answers again."""
        return "ok" if self._breaker.healthy else "degraded"

    def key(self, data_id: str) -> str:
        """The Redis key of an item's tensor."""
        return f"{self.prefix}{data_id}"

    async def get(self, data_id: str) -> np.ndarray | None:
        """The cached tensor, None on a miss; CacheUnavailableError while Redis cannot be used."""
        raw = await self._call("GET", lambda: self._client.get(self.key(data_id)))
        if raw is None:
            return None
        tensor = decode_tensor(bytes(raw), self._shape)
        if tensor is None:
            logger.warning("cache entry of %s is not a %s tensor; recomputing it", data_id, DTYPE)
        return tensor

    async def put(self, data_id: str, tensor: np.ndarray) -> None:
        """Store ``tensor`` with the TTL; runs after the answer is sent, so failures are logged."""
        value = encode_tensor(tensor)
        with suppress(CacheUnavailableError):
            await self._call(
                "SET", lambda: self._client.set(self.key(data_id), value, ex=self.ttl_seconds)
            )

    async def check(self) -> CacheHealth:
        """Ping Redis (unless the breaker is resting) and report the cache's health."""
        with suppress(CacheUnavailableError):
            await self._call("PING", self._client.ping)
        return self.health

    async def close(self) -> None:
        """Close the connections."""
        await self._client.aclose()

    async def _call(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
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
