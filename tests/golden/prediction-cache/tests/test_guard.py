"""The Redis guard: the circuit breaker's pauses, log-safe URLs, and a Redis that is not there."""

from __future__ import annotations

import asyncio

from src.cache.guard import CacheUnavailableError, CircuitBreaker, GuardedRedis, redacted
from tests.redis_server import free_port


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_rests_after_a_failure_and_lets_one_trial_through() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(first_pause=1.0, max_pause=4.0, clock=clock)
    assert breaker.allow() and breaker.healthy
    assert breaker.failed() == 1.0
    assert not breaker.allow()
    clock.now += 1.0
    assert breaker.allow()  # the trial
    assert not breaker.allow()  # everyone else waits for its outcome
    assert breaker.failed() == 2.0
    assert [breaker.failed() for _ in range(3)] == [4.0, 4.0, 4.0]
    clock.now += 4.0
    assert breaker.allow()
    breaker.succeeded()
    assert breaker.healthy and breaker.allow() and breaker.allow()


def test_the_breaker_pause_stays_bounded_after_many_failures() -> None:
    breaker = CircuitBreaker(first_pause=0.5, max_pause=30.0, clock=FakeClock())
    pauses = [breaker.failed() for _ in range(5000)]
    assert max(pauses) == 30.0


def test_urls_in_logs_carry_no_password() -> None:
    assert redacted("redis://user:secret@cache:6380/1") == "redis://cache:6380/1"


def test_a_redis_that_is_not_there_degrades_and_then_rests() -> None:
    async def scenario() -> tuple[str, str, str]:
        redis = GuardedRedis.connect(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
        try:
            first = await redis.check()
            try:
                await redis.call("GET", lambda: redis.client.get("key"))
            except CacheUnavailableError as err:
                # The breaker answers for Redis while it rests: no second connection attempt.
                return first, redis.health, str(err)
            return first, redis.health, "no error"
        finally:
            await redis.close()

    assert asyncio.run(scenario()) == ("degraded", "degraded", "redis is resting after a failure")
