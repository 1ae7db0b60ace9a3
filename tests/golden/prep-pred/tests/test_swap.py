"""The model swap of a running service (``make reload``), under continuous load.

The service runs as in production (run.sh: gunicorn, two workers) while client threads send
requests without pause; the model is swapped to another one, then to a corrupt file. No request
may fail or be refused, every answer must come from exactly one of the two models, and /metadata
must name the model that serves after each step. The second model is ``tests/data/next-model.onnx``:
another model with the same input for the iris sample models, a copy of the served model for a
project serving its own; with no such file (the digits sample has no second model), a copy of the
served model too. A copy's answers cannot tell the two apart; /metadata and the outcome still can.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from src.app import config
from src.app.config import Settings

PROJECT = Path(__file__).resolve().parents[1]
NEXT_MODEL = PROJECT / "tests" / "data" / "next-model.onnx"
CLIENTS = 4
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


@pytest.fixture
def service(tmp_path: Path) -> Iterator[str]:
    """The service started by run.sh on a free port, with a state folder of its own: its URL."""
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WORKERS": "2",
        "PYTHON": sys.executable,
        "SERVICE_STATE_DIR": str(tmp_path / "state"),
        "PROMETHEUS_MULTIPROC_DIR": "",
    }
    log = (tmp_path / "service.log").open("w")
    process = subprocess.Popen(["bash", str(PROJECT / "run.sh")], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, process, tmp_path / "service.log")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        log.close()


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


class Load:
    """Client threads asking without pause until stopped; every answer kept, failures too."""

    def __init__(self, url: str, body: dict[str, Any]) -> None:
        self.url, self.body = f"{url}{MODEL}/infer", body
        self.answers: list[tuple[int, str]] = []
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self.ask) for _ in range(CLIENTS)]

    def ask(self) -> None:
        while not self.stopped.is_set():
            try:
                status, answer = call(self.url, self.body)
                outputs = json.dumps(answer.get("outputs"), sort_keys=True)
                self.answers.append((status, outputs if status == 200 else json.dumps(answer)))
            except OSError as err:
                self.answers.append((0, repr(err)))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(timeout=60)


def swap(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    """``python -m src.reload`` against the service whose state is in ``state``."""
    env = {**os.environ, "SERVICE_STATE_DIR": str(state)}
    command = [sys.executable, "-m", "src.reload", *args]
    return subprocess.run(
        command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300
    )


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def served_sha256(url: str) -> str:
    sha256: str = call(f"{url}/metadata")[1]["model_sha256"]
    return sha256


def test_swaps_under_load_fail_no_request(service: str, tmp_path: Path) -> None:
    first = Settings.from_env().model_filepath
    second = tmp_path / "next.onnx"
    shutil.copyfile(NEXT_MODEL if NEXT_MODEL.is_file() else first, second)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(second.read_bytes()[:64])
    body = sample_body(service)
    before = call(f"{service}{MODEL}/infer", body)[1]["outputs"]
    with Load(service, body) as load:
        time.sleep(0.5)
        # --sha256: model-load's services check it; the others take it as given.
        swapped = swap(str(second), "--sha256", sha256_of(second), state=tmp_path / "state")
        assert swapped.returncode == 0, swapped.stdout + swapped.stderr
        assert served_sha256(service) == sha256_of(second)
        refused = swap(str(corrupt), "--sha256", sha256_of(corrupt), state=tmp_path / "state")
        time.sleep(0.5)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    # Asked now, when the workers of the first model have long finished what they held.
    after = call(f"{service}{MODEL}/infer", body)[1]["outputs"]
    metadata = call(f"{service}/metadata")[1]
    assert metadata["model_sha256"] == sha256_of(second)
    assert metadata["last_swap"]["outcome"] == "refused"
    assert "corrupt.onnx" in metadata["last_swap"]["reason"]
    failed = [answer for answer in load.answers if answer[0] != 200]
    assert not failed, failed[:5]
    models = {json.dumps(before, sort_keys=True), json.dumps(after, sort_keys=True)}
    assert {outputs for _, outputs in load.answers} <= models
    assert len(load.answers) > 50
    if sha256_of(second) != sha256_of(first):
        assert before != after, "the two models must answer differently to be told apart"
