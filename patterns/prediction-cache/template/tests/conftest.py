"""Fixtures: the service with its real model and a real redis-server as its answer cache.

Every test of the service's contract runs against the cache: a request a test sends twice is
answered from Redis the second time, and must still meet the contract. The tests start the
``redis-server`` binary on a free port of 127.0.0.1 (``tests/redis_server.py``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient
from redis import Redis

from src.app.config import Settings
from src.app.main import create_app

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

# Imported by pytest itself, so that its asserts are rewritten like a test module's.
pytest_plugins = ("tests.redis_server",)


def settings_for(redis_url: str, **overrides: str) -> Settings:
    """The environment's settings, with this Redis (and any other variable) replaced."""
    return Settings.from_env({**os.environ, "REDIS_URL": redis_url, **overrides})


@contextlib.contextmanager
def serve(redis_url: str, **overrides: str) -> Iterator[TestClient]:
    """The service, started through its lifespan, caching in the Redis at ``redis_url``."""
    app = create_app(settings_for(redis_url, **overrides))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="session", params=["true", "false"], ids=["fast-path", "framework"])
def client(request: pytest.FixtureRequest, redis_server: RedisServer) -> Iterator[TestClient]:
    """A client of the service with the shipped model and the session's Redis.

    Every test runs twice: with POST /predict served by the fast path, and by FastAPI's routing
    (FAST_PATH=false); both must answer the same, from the model and from the cache.
    """
    with serve(redis_server.url, FAST_PATH=request.param) as test_client:
        yield test_client


@pytest.fixture
def redis_db(redis_server: RedisServer) -> Iterator[Redis]:
    """The test Redis, emptied: every request starts as a miss."""
    connection = Redis.from_url(redis_server.url)
    connection.flushdb()
    try:
        yield connection
    finally:
        connection.close()
