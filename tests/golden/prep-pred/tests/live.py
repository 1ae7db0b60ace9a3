"""The service as in production (run.sh: gunicorn, two workers) on free ports of 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from src.app import config

PROJECT = Path(__file__).resolve().parents[1]
MODEL = f"/v2/models/{config.SERVICE_NAME}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def call(url: str, body: Any = None) -> tuple[int, Any]:
    """Status and JSON answer of a GET (or a POST of ``body``), on a connection of its own."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


@contextlib.contextmanager
def running(folder: Path, **environment: str) -> Iterator[str]:
    """The service started by run.sh on a free port, its state and log in ``folder``: its URL.

    ``environment`` adds to (or overrides) the test's own environment; SIGTERM stops it.
    """
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WORKERS": "2",
        "PYTHON": sys.executable,
        "SERVICE_STATE_DIR": str(folder / "state"),
        "PROMETHEUS_MULTIPROC_DIR": "",
        # No gRPC unless a test asks, on a free port: never one a running service listens on.
        "GRPC_PORT": "0",
        **environment,
    }
    log_path = folder / "service.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            ["bash", str(PROJECT / "run.sh")], env=env, stdout=log, stderr=log
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(url, process, log_path)
            yield url
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Return once /ready answers 200; fail with the service's log if it never does."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if call(f"{url}/ready")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the service did not get ready:\n{log.read_text()}")


def sample_body(url: str) -> dict[str, Any]:
    """A one-row V2 inference request made up from the model's own metadata."""
    tensors = []
    for meta in call(f"{url}{MODEL}")[1]["inputs"]:
        shape = [1, *(size if size > 0 else 1 for size in meta["shape"][1:])]
        width = 1
        for size in shape:
            width *= size
        if meta["datatype"].startswith(("INT", "UINT")):
            data: list[Any] = [index % 7 for index in range(width)]
        elif meta["datatype"] == "BOOL":
            data = [index % 2 == 0 for index in range(width)]
        elif meta["datatype"] == "BYTES":
            sample = getattr(config, "DATA_SAMPLE")  # noqa: B009 - not every pattern has it
            data = [str(sample[0][meta["name"]])] * width
        else:
            data = [round(0.1 + (index % 7) / 2, 2) for index in range(width)]
        tensors.append(
            {"name": meta["name"], "datatype": meta["datatype"], "shape": shape, "data": data}
        )
    return {"inputs": tensors}
