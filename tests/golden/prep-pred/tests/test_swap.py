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
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from src.app.config import Settings
from tests.live import MODEL, PROJECT, call, running, sample_body

NEXT_MODEL = PROJECT / "tests" / "data" / "next-model.onnx"
CLIENTS = 4


@pytest.fixture
def service(tmp_path: Path) -> Iterator[str]:
    """The service started by run.sh on a free port, with a state folder of its own: its URL."""
    with running(tmp_path) as url:
        yield url


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
