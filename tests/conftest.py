"""Shared fixtures: generated projects, a virtualenv for generated services, free ports."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from builder_core import build

REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS = ("requirements.txt", "requirements-dev.txt")
UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")


def run_builder(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m builder`` as a user would, from ``cwd``.

    ``timeout``: longer for commands that build virtualenvs (``builder test-pattern``).
    """
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "builder", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def own_tests(python: Path, project: Path) -> subprocess.CompletedProcess[str]:
    """A generated project's own test suite, run by ``python`` with warnings as errors."""
    return subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def generated_project(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Generate each pattern once per session with its default variables."""
    cache: dict[str, Path] = {}

    def generate(pattern: str) -> Path:
        if pattern not in cache:
            out = tmp_path_factory.mktemp(f"gen-{pattern}")
            cache[pattern] = build(pattern=pattern, output_dir=out).target
        return cache[pattern]

    return generate


@pytest.fixture(scope="session")
def service_python(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], Path]:
    """The Python of a fresh virtualenv with a generated project's pinned requirements.

    Projects whose requirements files are identical share one virtualenv.
    """
    if UV is None:
        pytest.fail("uv is required to build the generated services' virtualenvs (pip install uv)")
    venvs: dict[str, Path] = {}

    def python_for(project: Path) -> Path:
        key = hashlib.sha256(
            b"".join((project / name).read_bytes() for name in REQUIREMENTS)
        ).hexdigest()
        if key not in venvs:
            venv = tmp_path_factory.mktemp("service-venv") / "venv"
            subprocess.run([UV, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
            python = venv / "bin" / "python"
            subprocess.run(
                [UV, "pip", "install", "-q", "--python", str(python), "-r", "requirements-dev.txt"],
                cwd=project,
                check=True,
            )
            venvs[key] = python
        return venvs[key]

    return python_for


class RedisServer:
    """A real redis-server on 127.0.0.1 that a test may stop, kill and start again."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL a client connects with."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart) the server on the same port; return once it accepts connections."""
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        command = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.folder),
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.05)
        pytest.fail(f"redis-server did not listen on {self.port}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server (SIGKILL to simulate a crash)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for a test module; its tests may flush, stop and restart it."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh, empty redis-server for one test."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Report the size of every image the container smoke tests built."""
    from container_smoke import IMAGE_SIZES

    if IMAGE_SIZES:
        terminalreporter.section("image sizes")
        for tag, size in sorted(IMAGE_SIZES.items()):
            terminalreporter.write_line(f"{tag:<48} {size / 2**20:8.1f} MiB")
