"""The tensor cache: preprocessed items in Redis, and how the service keeps answering without it.

Entries are ``.npy`` bytes (dtype and shape travel with the data) under a key naming the service,
the preprocessing version and the store, each with a TTL. Redis is only ever a shortcut: when it
fails, the circuit breaker (``src.data.guard``) keeps it out of the request path for a while and
requests are served uncached.
"""

from __future__ import annotations

import hashlib
import io
import logging
from contextlib import suppress
from functools import cache

import numpy as np

from src.data.guard import CacheHealth, CacheUnavailableError, GuardedRedis
from src.ml.preprocess import DTYPE, PREPROCESS_VERSION

logger = logging.getLogger(__name__)

# Fixed byte order, so that every machine reads the same entries.
STORED_DTYPE = np.dtype("<f4")


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


class TensorCache:
    """Preprocessed tensors by data ID, in Redis, behind a circuit breaker."""

    def __init__(
        self, redis: GuardedRedis, prefix: str, ttl_seconds: int, shape: tuple[int, ...]
    ) -> None:
        self._redis = redis
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds
        self._shape = shape

    @classmethod
    def connect(
        cls, url: str, prefix: str, ttl_seconds: int, shape: tuple[int, ...], timeout: float
    ) -> TensorCache:
        """A cache on the Redis at ``url``; no connection is made until it is first used."""
        return cls(GuardedRedis.connect(url, timeout), prefix, ttl_seconds, shape)

    @property
    def health(self) -> CacheHealth:
        """``ok`` while Redis answers, ``degraded`` after a failure until it answers again."""
        return self._redis.health

    def key(self, data_id: str) -> str:
        """The Redis key of an item's tensor."""
        return f"{self.prefix}{data_id}"

    async def get(self, data_id: str) -> np.ndarray | None:
        """The cached tensor, None on a miss; CacheUnavailableError while Redis cannot be used."""
        client = self._redis.client
        raw = await self._redis.call("GET", lambda: client.get(self.key(data_id)))
        if raw is None:
            return None
        tensor = decode_tensor(bytes(raw), self._shape)
        if tensor is None:
            logger.warning("cache entry of %s is not a %s tensor; recomputing it", data_id, DTYPE)
        return tensor

    async def put(self, data_id: str, tensor: np.ndarray) -> None:
        """Store ``tensor`` with the TTL; runs after the answer is sent, so failures are logged."""
        value, client = encode_tensor(tensor), self._redis.client
        with suppress(CacheUnavailableError):
            await self._redis.call(
                "SET", lambda: client.set(self.key(data_id), value, ex=self.ttl_seconds)
            )

    async def check(self) -> CacheHealth:
        """Ping Redis (unless the breaker is resting) and report the cache's health."""
        return await self._redis.check()

    async def close(self) -> None:
        """Close the connections."""
        await self._redis.close()
