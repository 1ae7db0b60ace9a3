"""Fixtures: a real redis-server, the proxy wired to it, and real worker processes.

A queue is only tested for real against a real Redis: these tests start the ``redis-server``
binary on a free port of 127.0.0.1 (``tests/redis_server.py``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis
from fastapi.testclient import TestClient

from src.app.config import Settings
from src.app.main import create_app
from src.jobs.config import QueueSettings

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

# Imported by pytest itself, so that its asserts are rewritten like a test module's.
pytest_plugins = ("tests.redis_server",)

PROJECT = Path(__file__).resolve().parent.parent
# Database 0 serves the shared client; each test that needs a queue of its own gets another.
SPARE_DATABASES = itertools.cycle(range(1, 16))


@pytest.fixture(scope="session")
def redis_port(redis_server: RedisServer) -> int:
    """The port of the session's redis-server (no persistence, noeviction as deployed)."""
    return redis_server.port


@pytest.fixture
def redis_url(redis_port: int) -> str:
    """The URL of an empty database of the session's Redis, for one test."""
    url = f"redis://127.0.0.1:{redis_port}/{next(SPARE_DATABASES)}"
    with redis.Redis.from_url(url) as connection:
        connection.flushdb()
    return url


def queue_settings(url: str, **overrides: str) -> QueueSettings:
    """The queue settings of the environment, with ``url`` and any ``overrides`` in it."""
    return QueueSettings.from_env({**os.environ, "REDIS_URL": url, **overrides})


@contextlib.contextmanager
def serve(url: str, **overrides: str) -> Iterator[TestClient]:
    """The proxy, started through its lifespan, using the queue at ``url``.

    ``overrides`` are environment variables of either settings, such as ``FAST_PATH="false"``.
    """
    env = {**os.environ, "REDIS_URL": url, **overrides}
    app = create_app(Settings.from_env(env), QueueSettings.from_env(env))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="session", params=["true", "false"], ids=["fast-path", "framework"])
def client(request: pytest.FixtureRequest, redis_port: int) -> Iterator[TestClient]:
    """A client of the proxy with the shipped model and the session's Redis.

    Every test runs twice: with POST /predict served by the fast path, and by FastAPI's routing
    (FAST_PATH=false); both must answer the same.
    """
    with serve(f"redis://127.0.0.1:{redis_port}/0", FAST_PATH=request.param) as test_client:
        yield test_client


@pytest.fixture(params=["true", "false"], ids=["fast-path", "framework"])
def fast_path(request: pytest.FixtureRequest) -> str:
    """FAST_PATH for a test that starts a proxy of its own: both ways of serving POST /predict."""
    value: str = request.param
    return value


class WorkerProcess:
    """A queue worker started as ``python -m src.worker``; its output goes to a file."""

    def __init__(self, url: str, folder: Path, **overrides: str) -> None:
        self.heartbeat = folder / f"worker-{id(self)}.heartbeat"
        self.log = folder / f"worker-{id(self)}.log"
        env = {**os.environ, "REDIS_URL": url, "HEARTBEAT_FILE": str(self.heartbeat)}
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "src.worker"],
                cwd=PROJECT,
                env={**env, **overrides},
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        """Everything the worker printed so far."""
        return self.log.read_text(errors="replace")

    def wait_joined(self, seconds: float = 30) -> None:
        """Return once the worker loaded its model and joined the queue."""
        deadline = time.monotonic() + seconds
        while "joined the queue" not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the worker did not join the queue:\n{self.output()}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` (if still running) and return the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=30)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers for one test; any still running at the end are stopped."""
    started: list[WorkerProcess] = []

    def start(url: str, **overrides: str) -> WorkerProcess:
        worker = WorkerProcess(url, tmp_path, **overrides)
        started.append(worker)
        worker.wait_joined()
        return worker

    yield start
    for worker in started:
        worker.stop(signal.SIGKILL)
