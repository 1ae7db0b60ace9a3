"""Shared fixtures: generated projects, a virtualenv for generated services, free ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from builder_core import build

REPO = Path(__file__).resolve().parent.parent
UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")


def run_builder(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m builder`` as a user would, from ``cwd``."""
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "builder", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
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
def service_python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtualenv with a generated service's pinned requirements (shared by patterns)."""
    if UV is None:
        pytest.fail("uv is required to build the generated services' virtualenvs (pip install uv)")
    project = build(pattern="web-single", output_dir=tmp_path_factory.mktemp("venv-source")).target
    venv = tmp_path_factory.mktemp("service-venv") / "venv"
    subprocess.run([UV, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [UV, "pip", "install", "-q", "--python", str(python), "-r", "requirements-dev.txt"],
        cwd=project,
        check=True,
    )
    yield python
