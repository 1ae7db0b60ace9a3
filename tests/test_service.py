"""Generated services for real: their own tests in a fresh virtualenv, then live over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, own_tests

from builder_core import pattern_names
from builder_core.patterns import load_pattern

pytestmark = pytest.mark.slow

# Typical flowers of each species (near the class means of Fisher's iris data).
TYPICAL = {
    "setosa": [5.0, 3.4, 1.5, 0.2],
    "versicolor": [5.9, 2.8, 4.3, 1.3],
    "virginica": [6.6, 3.0, 5.6, 2.0],
}


def call(url: str, body: bytes | None = None) -> tuple[int, Any]:
    """GET (or POST ``body`` as JSON) and return the status and the decoded answer."""
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


class Server:
    """A started service and the file its output goes to (a pipe nobody reads would fill up)."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log

    def output(self) -> str:
        """Everything the service printed so far."""
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, as Kubernetes and docker stop send it; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def start(
    project: Path, python: Path, port: int, script: str = "run.sh", **environment: str
) -> Server:
    """Start the service with its own run.sh (or ``script``), as its README says."""
    env = {
        **os.environ,
        "PATH": f"{python.parent}:{os.environ['PATH']}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKERS": "2",
        **environment,
    }
    log = project.parent / f"server-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(project / script)], cwd="/", env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    return Server(process, log)


def wait_ready(base: str, server: Server, seconds: float = 60) -> None:
    """Poll /ready until 200; fail with the server's output if it dies or never gets there."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"server exited with {server.process.returncode}:\n{server.output()}")
        try:
            if call(f"{base}/ready")[0] == 200:
                return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.2)
    pytest.fail(f"{base}/ready was not 200 within {seconds} s:\n{server.output()}")


# Patterns whose /predict takes rows of the four iris measurements (the iris or the forest model).
ROW_PATTERNS = [
    name
    for name in pattern_names()
    if load_pattern(name).info.request == "rows"
    and load_pattern(name).info.sample_model in ("iris", "iris-slow")
]


@pytest.fixture(scope="module", params=ROW_PATTERNS)
def live(
    request: pytest.FixtureRequest,
    generated_project: Callable[[str], Path],
    service_python: Callable[[Path], Path],
) -> Iterator[tuple[str, Server]]:
    """A generated service of each pattern, running on a free port on 127.0.0.1."""
    port = free_port()
    project = generated_project(request.param)
    server = start(project, service_python(project), port)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server)
        yield base, server
    finally:
        server.stop()


@pytest.mark.parametrize("pattern", pattern_names())
def test_the_projects_own_tests_pass(
    pattern: str,
    generated_project: Callable[[str], Path],
    service_python: Callable[[Path], Path],
) -> None:
    project = generated_project(pattern)
    result = own_tests(service_python(project), project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout


def test_typical_flowers_get_their_species(live: tuple[str, Any]) -> None:
    base, _ = live
    body = json.dumps({"data": list(TYPICAL.values())}).encode()
    status, labels = call(f"{base}/predict/label", body)
    assert status == 200
    assert labels["prediction"] == list(TYPICAL)
    status, scores = call(f"{base}/predict", body)
    assert status == 200
    for row in scores["prediction"]:
        assert len(row) == 3
        assert abs(sum(row) - 1.0) < 1e-4


BAD = {
    "wrong row length": b'{"data": [[1.0, 2.0, 3.0]]}',
    "ragged rows": b'{"data": [[1.0, 2.0, 3.0, 4.0], [1.0]]}',
    "empty input": b'{"data": []}',
    "string": b'{"data": [["1.0", 2.0, 3.0, 4.0]]}',
    "boolean": b'{"data": [[true, 2.0, 3.0, 4.0]]}',
    "NaN": b'{"data": [[NaN, 2.0, 3.0, 4.0]]}',
    "infinity": b'{"data": [[Infinity, 2.0, 3.0, 4.0]]}',
    "overflows float32": b'{"data": [[1e39, 2.0, 3.0, 4.0]]}',
    "missing field": b'{"rows": [[1.0, 2.0, 3.0, 4.0]]}',
    "not JSON": b"data=1",
    "too many rows": json.dumps({"data": [[1.0, 2.0, 3.0, 4.0]] * 1001}).encode(),
    "too large a body": b'{"data": [' + b" " * (1 << 20) + b"]}",
}


@pytest.mark.parametrize("body", BAD.values(), ids=BAD.keys())
def test_bad_input_is_refused_with_4xx(live: tuple[str, Any], body: bytes) -> None:
    base, _ = live
    for path in ("/predict", "/predict/label"):
        status, answer = call(f"{base}{path}", body)
        assert 400 <= status < 500, (path, status, answer)
        assert answer["detail"]


def test_sigterm_stops_the_service_cleanly(
    generated_project: Callable[[str], Path], service_python: Callable[[Path], Path]
) -> None:
    port = free_port()
    project = generated_project("web-single")
    server = start(project, service_python(project), port)
    wait_ready(f"http://127.0.0.1:{port}", server)
    assert server.stop() == 0
    output = server.output()
    assert "Shutting down" in output
    assert "Traceback" not in output


def test_a_missing_model_stops_the_service_instead_of_serving(
    generated_project: Callable[[str], Path],
    service_python: Callable[[Path], Path],
    tmp_path: Path,
) -> None:
    port = free_port()
    project = generated_project("web-single")
    os.environ["MODEL_FILEPATH"] = str(tmp_path / "missing.onnx")
    try:
        server = start(project, service_python(project), port)
    finally:
        del os.environ["MODEL_FILEPATH"]
    status = server.process.wait(timeout=60)
    assert status != 0
    assert "missing.onnx" in server.output()
