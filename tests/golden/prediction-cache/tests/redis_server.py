"""A real redis-server of the tests' own on 127.0.0.1, and the ``redis_server`` fixture.

The tests need the ``redis-server`` binary (apt-get install redis-server, or brew install redis).
A conftest uses the fixture with ``pytest_plugins = ("tests.redis_server",)``.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A redis-server on 127.0.0.1, evicting as the deployment's does.

    Without persistence, or ``durable`` as deployed for a queue: an append-only file in
    ``folder``, synced every second, read again when the server starts again.
    """

    def __init__(self, folder: Path, durable: bool = False) -> None:
        self.port = free_port()
        self.folder = folder
        self.durable = durable
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL of its database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart) the server on its port; return once it accepts connections."""
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("the tests need redis-server on PATH (apt-get install redis-server)")
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        if self.durable:
            command += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            command += ["--appendonly", "no"]
        command += ["--dir", str(self.folder)]
        command += ["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"]
        with (self.folder / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.05)
        pytest.fail(f"redis-server did not listen on port {self.port}: see {self.folder}")

    def kill(self) -> None:
        """SIGKILL the server, as a crash or an evicted pod would: it writes nothing more."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        """Stop the server, as an outage would."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the test session."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
