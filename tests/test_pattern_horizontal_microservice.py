"""The horizontal-microservice pattern for real: the proxy and every backend started with the
project's own scripts on 127.0.0.1 (two workers each); one backend stopped, one frozen.

The generated project's own tests (run by test_service.py) cover the proxy in depth in one process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, free_port
from test_service import Server, call, start, wait_ready

from builder_core import build
from builder_core.patterns import load_pattern

pytestmark = pytest.mark.slow

PATTERN = "horizontal-microservice"
BACKENDS = str(load_pattern(PATTERN).info.defaults()["backends"]).split(",")
TYPICAL = {
    "setosa": [5.0, 3.4, 1.5, 0.2],
    "versicolor": [5.9, 2.8, 4.3, 1.3],
    "virginica": [6.6, 3.0, 5.6, 2.0],
}
TIMEOUT_MS = 500


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (gunicorn's master and its workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while the table was read
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(children.get(current, []))
    return found


def signal_tree(server: Server, sig: int) -> None:
    """Send ``sig`` to the server's master and its workers."""
    for pid in process_tree(server.process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def predict(base: str, rows: Any) -> tuple[int, Any]:
    """POST the rows to the proxy."""
    return call(f"{base}/predict", json.dumps({"data": rows}).encode())


class Deployment:
    """Every backend (run.sh with its own model) and the proxy (run-proxy.sh) in front."""

    def __init__(self, project: Path, python: Path) -> None:
        self.backends: dict[str, Server] = {}
        urls = []
        for name in BACKENDS:
            port = free_port()
            model = f"models/backends/{name}.onnx"
            self.backends[name] = start(project, python, port, MODEL_FILEPATH=model)
            wait_ready(f"http://127.0.0.1:{port}", self.backends[name])
            urls.append(f"{name}=http://127.0.0.1:{port}")
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.proxy = start(
            project,
            python,
            port,
            "run-proxy.sh",
            BACKEND_URLS=",".join(urls),
            BACKEND_TIMEOUT_MS=str(TIMEOUT_MS),
        )
        wait_ready(self.base, self.proxy)

    def stop(self) -> None:
        """Stop every process (a frozen one is continued first, so that it can stop)."""
        self.proxy.stop()
        for server in self.backends.values():
            signal_tree(server, signal.SIGCONT)
            server.stop()


@pytest.fixture(scope="module")
def project(generated_project: Callable[[str], Path]) -> Path:
    """The pattern generated with its default variables."""
    return generated_project(PATTERN)


@pytest.fixture(scope="module")
def deployment(project: Path, service_python: Callable[[Path], Path]) -> Iterator[Deployment]:
    """The proxy and its backends, started for the module."""
    running = Deployment(project, service_python(project))
    try:
        yield running
    finally:
        running.stop()


def test_typical_flowers_are_named_by_the_backend_that_says_yes(deployment: Deployment) -> None:
    status, answer = predict(deployment.base, list(TYPICAL.values()))
    assert status == 200, answer
    assert answer["missing"] == {}
    assert answer["prediction"] == list(TYPICAL)
    assert all(sorted(row) == sorted(BACKENDS) for row in answer["scores"])
    status, ready = call(f"{deployment.base}/ready")
    assert ready["backends"] == dict.fromkeys(BACKENDS, "ok")


def test_a_frozen_backend_is_left_out_at_the_timeout(deployment: Deployment) -> None:
    frozen = deployment.backends[BACKENDS[1]]
    signal_tree(frozen, signal.SIGSTOP)
    try:
        started = time.monotonic()
        status, answer = predict(deployment.base, [TYPICAL["setosa"]])
        took = time.monotonic() - started
    finally:
        signal_tree(frozen, signal.SIGCONT)
    assert status == 200, answer
    assert answer["missing"] == {BACKENDS[1]: f"no answer within {TIMEOUT_MS / 1000:g} s"}
    assert answer["prediction"] == ["setosa"]
    assert TIMEOUT_MS / 1000 <= took < TIMEOUT_MS / 1000 + 1.5


def test_a_stopped_backend_gives_a_partial_answer_then_none_is_503(
    deployment: Deployment,
) -> None:
    deployment.backends[BACKENDS[0]].stop()
    status, answer = predict(deployment.base, [TYPICAL["virginica"]])
    assert status == 200, answer
    assert list(answer["missing"]) == [BACKENDS[0]]
    assert answer["prediction"] == ["virginica"]
    for name in BACKENDS[1:]:
        deployment.backends[name].stop()
    status, answer = predict(deployment.base, [TYPICAL["virginica"]])
    assert status == 503
    assert all(name in answer["detail"] for name in BACKENDS)
    assert "Traceback" not in deployment.proxy.output()


def test_compose_and_manifests_wire_the_proxy_to_every_backend(project: Path) -> None:
    compose = yaml.safe_load((project / "docker-compose.yml").read_text())
    api = compose["services"]["api"]
    assert api["command"] == ["./run-proxy.sh"]
    assert sorted(api["depends_on"]) == sorted(f"model-{name}" for name in BACKENDS)
    # A folded line: the entries are separated by ", ".
    urls = api["environment"]["BACKEND_URLS"].split(",")
    listed = dict(entry.strip().split("=") for entry in urls)
    for name, url in listed.items():
        backend = compose["services"][f"model-{name}"]
        assert url.endswith(f":{backend['environment']['PORT']}")
        assert backend["environment"]["MODEL_FILEPATH"] == f"models/backends/{name}.onnx"
    documents = list(yaml.safe_load_all((project / "manifests" / "backends.yaml").read_text()))
    kinds = sorted({document["kind"] for document in documents})
    proxy = yaml.safe_load((project / "manifests" / "deployment.yaml").read_text())
    probe = proxy["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["httpGet"]["path"] == "/v2/health/ready"
    assert kinds == [
        "Deployment",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
    ]
    policies = [document for document in documents if document["kind"] == "NetworkPolicy"]
    assert len(policies) == len(BACKENDS)
    for policy in policies:
        [rule] = policy["spec"]["ingress"]
        [source] = rule["from"]
        assert source["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "api"


def test_a_backend_without_a_sample_model_starts_with_the_served_one(tmp_path: Path) -> None:
    variables = tmp_path / "vars.yaml"
    defaults = yaml.safe_load((REPO / "patterns" / PATTERN / "vars.yaml").read_text())
    variables.write_text(yaml.safe_dump({**defaults, "backends": "setosa,cat"}))
    target = build(pattern=PATTERN, variable_file=variables, output_dir=tmp_path / "out").target
    models = target / "models"
    samples = REPO / "sample_models"
    served = (models / defaults["model_file_name"]).read_bytes()
    assert (models / "backends" / "setosa.onnx").read_bytes() == served
    assert (models / "backends" / "cat.onnx").read_bytes() == served
    assert sorted(path.name for path in (models / "backends").iterdir()) == [
        "cat.onnx",
        "setosa.onnx",
    ]
    assert served == (samples / "iris-setosa" / "model.onnx").read_bytes()


def test_with_the_user_s_model_every_backend_starts_with_it(tmp_path: Path) -> None:
    model = REPO / "sample_models" / "iris" / "model.onnx"
    # No model-describing keys: they are read from the user's model.
    variables = tmp_path / "vars.yaml"
    variables.write_text("name: species\n")
    target = build(
        pattern=PATTERN,
        variable_file=variables,
        model=model,
        labels=REPO / "sample_models" / "iris" / "label.json",
        output_dir=tmp_path / "out",
    ).target
    for name in BACKENDS:
        assert (target / "models" / "backends" / f"{name}.onnx").read_bytes() == model.read_bytes()
