"""The answer cache: whole answers in Redis, under a key no other model or input can share.

A key hashes the model's sha256, the route and the request's rows as canonical JSON (object keys
sorted, no spaces), so the same rows sent with other spacing or key order find the same entry, and
a new model never serves an old answer: its entries live under other keys, and the old ones
expire with their TTL. Values are the answer's JSON bytes, exactly as the model's answer was sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from contextlib import suppress
from typing import Any

import orjson
from prometheus_client import Counter

from src.cache.guard import CacheHealth, CacheUnavailableError, GuardedRedis

logger = logging.getLogger(__name__)

LOOKUPS = Counter(
    "prediction_cache_lookups",
    "Requests looked up in the answer cache, by result: hit (answered from Redis), miss (answered "
    "by the model) or unavailable (Redis failing or resting: answered by the model, uncached).",
    ["result"],
)
WRITES_DROPPED = Counter(
    "prediction_cache_writes_dropped",
    "Answers not cached because too many writes to Redis were already waiting.",
)
# A request's rows must differ from another's for the key to: the digest is the whole of it.
KEY_DIGEST = "sha256"


def canonical_rows(body: bytes, max_rows: int) -> bytes | None:
    """The rows of a request body as canonical JSON, or None when the body is not worth a lookup.

    None for anything the service refuses whatever the cache holds (not JSON, a field other than
    ``data``, no rows or more than ``max_rows``): such requests go to the routes, which say why.
    """
    try:
        payload: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    # Any other field is refused by the routes (422): only {"data": [...]} is worth a lookup.
    if not isinstance(payload, dict) or payload.keys() != {"data"}:
        return None
    rows = payload["data"]
    if not isinstance(rows, list) or not rows or len(rows) > max_rows:
        return None
    return orjson.dumps(rows, option=orjson.OPT_SORT_KEYS)


class AnswerCache:
    """Answers by route and rows, in Redis, behind a circuit breaker; written in the background."""

    def __init__(
        self,
        redis: GuardedRedis,
        service: str,
        model_sha256: str,
        ttl_seconds: int,
        max_pending_writes: int,
    ) -> None:
        self._redis = redis
        self._model = model_sha256.encode()
        # The model's short hash in every key: `SCAN MATCH <prefix>*` finds one model's entries.
        self.prefix = f"{service}:answer:{model_sha256[:16]}:"
        self.ttl_seconds = ttl_seconds
        self.max_pending_writes = max_pending_writes
        self._pending: set[asyncio.Task[None]] = set()

    @classmethod
    def connect(
        cls,
        url: str,
        timeout: float,
        service: str,
        model_sha256: str,
        ttl_seconds: int,
        max_pending_writes: int,
    ) -> AnswerCache:
        """A cache on the Redis at ``url``; no connection is made until it is first used."""
        redis = GuardedRedis.connect(url, timeout)
        return cls(redis, service, model_sha256, ttl_seconds, max_pending_writes)

    @property
    def health(self) -> CacheHealth:
        """``ok`` while Redis answers, ``degraded`` after a failure until it answers again."""
        return self._redis.health

    def key(self, route: str, rows: bytes) -> str:
        """The Redis key of the answer ``route`` gives for ``rows`` (canonical JSON)."""
        digest = hashlib.new(KEY_DIGEST, self._model)
        digest.update(b"\n" + route.encode() + b"\n")
        digest.update(rows)
        return self.prefix + digest.hexdigest()

    async def get(self, key: str) -> bytes | None:
        """The cached answer, None on a miss; CacheUnavailableError while Redis cannot be used."""
        client = self._redis.client
        try:
            raw: bytes | None = await self._redis.call("GET", lambda: client.get(key))
        except CacheUnavailableError:
            LOOKUPS.labels("unavailable").inc()
            raise
        LOOKUPS.labels("miss" if raw is None else "hit").inc()
        return raw

    def put_later(self, key: str, answer: bytes) -> None:
        """Write ``answer`` with the TTL in the background; dropped when too many writes wait."""
        if len(self._pending) >= self.max_pending_writes:
            WRITES_DROPPED.inc()
            return
        task = asyncio.get_running_loop().create_task(self._put(key, answer))
        # The loop keeps only a weak reference to a task: this set keeps it until it is done.
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _put(self, key: str, answer: bytes) -> None:
        client = self._redis.client
        with suppress(CacheUnavailableError):
            await self._redis.call("SET", lambda: client.set(key, answer, ex=self.ttl_seconds))

    async def check(self) -> CacheHealth:
        """Ping Redis (unless the breaker is resting) and report the cache's health."""
        return await self._redis.check()

    async def close(self, grace_seconds: float = 2.0) -> None:
        """Let waiting writes finish (for at most ``grace_seconds``), then close the connections."""
        if self._pending:
            _, late = await asyncio.wait(set(self._pending), timeout=grace_seconds)
            for task in late:
                task.cancel()
            if late:
                logger.warning("%d answers not cached: Redis too slow at shutdown", len(late))
        await self._redis.close()
