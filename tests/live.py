"""A generated service running for real on 127.0.0.1, with what its pattern runs beside it.

The server is started with the project's own ``run.sh``. A pattern component that docker compose
runs from the project's own image with a command of its own (the queue worker of sync-async) is
started the same way, with the venv's Python. Redis is the caller's: it passes ``redis_url``.
Free of pytest, so that ``bench/soak.py`` runs the same stack.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from builder_core.patterns import PatternInfo


class ServiceError(RuntimeError):
    """The service (or a process beside it) did not start, or died."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def call(url: str, body: bytes | None = None, timeout: float = 10) -> tuple[int, Any]:
    """GET (or POST ``body`` as JSON); the status and the decoded answer (None if not JSON)."""
    status, answer, _ = call_with_headers(url, body, timeout)
    return status, answer


def call_with_headers(
    url: str, body: bytes | None = None, timeout: float = 10
) -> tuple[int, Any, dict[str, str]]:
    """:func:`call`, and the answer's headers (names in lower case)."""
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            headers = {name.lower(): value for name, value in response.headers.items()}
            return response.status, _json(response.read()), headers
    except urllib.error.HTTPError as err:
        headers = {name.lower(): value for name, value in err.headers.items()}
        return err.code, _json(err.read()), headers


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


class Process:
    """A started process; its output goes to a file, never to a pipe nobody reads."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                command, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT
            )

    @property
    def pid(self) -> int:
        """The process ID."""
        return self.process.pid

    def output(self) -> str:
        """Everything it printed so far."""
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send ``sig`` if it still runs; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


def companions(project: Path, info: PatternInfo) -> dict[str, list[str]]:
    """Components compose runs from the project's image with a command: name → command."""
    compose = yaml.safe_load((project / "docker-compose.yml").read_text(encoding="utf-8"))
    services: dict[str, Any] = compose.get("services") or {}
    found: dict[str, list[str]] = {}
    for name in info.components:
        service = services.get(name) or {}
        if "build" in service and service.get("command"):
            found[name] = [str(part) for part in service["command"]]
    return found


@dataclass
class Stack:
    """The server and its companions; ``base`` is the server's URL."""

    base: str
    server: Process
    companions: list[Process] = field(default_factory=list)

    def output(self) -> str:
        """What every process of the stack printed so far, the server first."""
        return "\n".join(process.output() for process in [self.server, *self.companions])

    def wait_ready(self, seconds: float = 60) -> None:
        """Poll /ready until 200; ServiceError with the output if it dies or never gets there."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.server.process.poll() is not None:
                raise ServiceError(f"the server exited:\n{self.output()}")
            try:
                if call(f"{self.base}/ready", timeout=2)[0] == 200:
                    return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise ServiceError(f"{self.base}/ready was not 200 within {seconds} s:\n{self.output()}")

    def stop(self) -> int:
        """Stop the companions, then the server with SIGTERM; the server's exit status."""
        for process in self.companions:
            process.stop(signal.SIGKILL)
        return self.server.stop()


def start_stack(
    project: Path,
    python: Path,
    info: PatternInfo,
    folder: Path,
    redis_url: str | None = None,
    env: dict[str, str] | None = None,
) -> Stack:
    """Start the service on a free port and its companions; not yet ready when it returns."""
    if "redis" in info.components and redis_url is None:
        raise ServiceError("this pattern needs Redis: pass redis_url")
    base_env = {
        **os.environ,
        "PATH": f"{python.parent}:{os.environ['PATH']}",
        # Each stack its own temporary folder: the worker's heartbeat file lives there.
        "TMPDIR": str(folder),
        **({"REDIS_URL": redis_url} if redis_url else {}),
    }
    port = free_port()
    server_env = {**base_env, "HOST": "127.0.0.1", "PORT": str(port), "WORKERS": "2", **(env or {})}
    base_env.update(env or {})
    server = Process([str(project / "run.sh")], Path("/"), server_env, folder / "server.log")
    stack = Stack(f"http://127.0.0.1:{port}", server)
    for name, command in companions(project, info).items():
        argv = [str(python) if part in ("python", "python3") else part for part in command]
        stack.companions.append(Process(argv, project, base_env, folder / f"{name}.log"))
    return stack


@contextlib.contextmanager
def redis_server(folder: Path, password: str | None = None) -> Iterator[str]:
    """An empty redis-server on a free port of 127.0.0.1 while the block runs; its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(folder)]
    command += ["--requirepass", password] if password else []
    process = Process(command, folder, dict(os.environ), folder / "redis.log")
    try:
        deadline = time.monotonic() + 10
        while not _listening(port):
            if time.monotonic() > deadline or process.process.poll() is not None:
                raise ServiceError(f"redis-server did not listen on {port}:\n{process.output()}")
            time.sleep(0.05)
        yield f"redis://{f':{password}@' if password else ''}127.0.0.1:{port}/0"
    finally:
        process.stop()


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """An empty PostgreSQL on a free port of 127.0.0.1 while the block runs; its URL.

    From Debian's server binaries, in a folder of its own under /tmp (as root, the server runs as
    the package's postgres user: PostgreSQL refuses root, and pytest's folders are closed to it).
    """
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise ServiceError("PostgreSQL is not installed (apt-get install postgresql)")
    binaries = Path(found[-1]).parent
    folder = Path(tempfile.mkdtemp(prefix="postgres-"))
    as_server = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_server:
        shutil.chown(folder, "postgres")
    port = free_port()
    data, log = folder / "data", folder / "log"
    initdb = [str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
    subprocess.run([*as_server, *initdb], check=True, capture_output=True)
    pg_ctl = [*as_server, str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log)]
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*pg_ctl, "-o", options, "-w", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], check=False, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


@contextlib.contextmanager
def running(
    project: Path,
    python: Path,
    info: PatternInfo,
    folder: Path,
    env: dict[str, str] | None = None,
    redis_password: str | None = None,
) -> Iterator[Stack]:
    """The service ready, with a Redis (or PostgreSQL) of its own if its pattern has one; all
    stopped after."""
    with contextlib.ExitStack() as cleanup:
        redis_url = None
        if "redis" in info.components:
            redis_url = cleanup.enter_context(redis_server(folder, redis_password))
        if "postgres" in info.components and "DATABASE_URL" not in (env or {}):
            env = {**(env or {}), "DATABASE_URL": cleanup.enter_context(postgres_server())}
        stack = start_stack(project, python, info, folder, redis_url, env)
        cleanup.callback(stack.stop)
        stack.wait_ready()
        yield stack


def example_body(base: str, path: str = "/predict") -> bytes:
    """The first example of the JSON body ``POST path`` takes, as its OpenAPI schema gives it."""
    schema = call(f"{base}/openapi.json")[1]
    body = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    name = body["$ref"].rsplit("/", 1)[1]
    return json.dumps(schema["components"]["schemas"][name]["examples"][0]).encode()
