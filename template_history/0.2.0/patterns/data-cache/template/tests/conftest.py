"""Fixtures: a real redis-server on 127.0.0.1, and the application with its real model and store.

The tests need the ``redis-server`` binary (apt-get install redis-server, brew install redis).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from redis import Redis

from src.app.main import create_app
from tests.support import RedisServer, settings_for


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def client(redis_server: RedisServer) -> Iterator[TestClient]:
    """A client of the service with the shipped model and data store, and the test Redis."""
    app = create_app(settings_for(redis_server.url))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def redis_db(redis_server: RedisServer) -> Iterator[Redis]:
    """The test Redis, emptied: every item starts as a miss."""
    connection = Redis.from_url(redis_server.url)
    connection.flushdb()
    try:
        yield connection
    finally:
        connection.close()
