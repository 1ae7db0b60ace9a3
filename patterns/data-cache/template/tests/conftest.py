"""Fixtures: a real redis-server on 127.0.0.1, and the application with its real model and store.

The tests need the ``redis-server`` binary (``tests/redis_server.py``).
"""

from __future__ import annotations

import io
import os
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from redis import Redis

from src.app.config import Settings
from src.app.main import create_app

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

# Imported by pytest itself, so that its asserts are rewritten like a test module's.
pytest_plugins = ("tests.redis_server",)


def png_with_a_bad_chunk() -> bytes:
    """A small PNG whose image data is split in two chunks, the second of a malformed type."""
    image = io.BytesIO()
    Image.new("L", (8, 8), 128).save(image, format="PNG")
    data = image.getvalue()
    start = data.index(b"IDAT") - 4
    length = int.from_bytes(data[start : start + 4], "big")
    payload = data[start + 8 : start + 8 + length]
    half = len(payload) // 2

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body).to_bytes(4, "big")
        return len(body).to_bytes(4, "big") + kind + body + crc

    split = chunk(b"IDAT", payload[:half]) + chunk(b"ID\x00T", payload[half:])
    return data[:start] + split + data[start + 12 + length :]


def settings_for(redis_url: str, **overrides: str) -> Settings:
    """The environment's settings, with this Redis (and any other variable) replaced."""
    return Settings.from_env({**os.environ, "REDIS_URL": redis_url, **overrides})


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
