"""The Open Inference Protocol, metrics and logs of generated services, for real.

Every pattern's service is started by its own run.sh on 127.0.0.1 with two gunicorn workers and
called as a user would: the V2 endpoints with ``tritonclient`` (a real KServe V2 HTTP client),
the metrics by scraping /metrics, the logs by reading what the service printed. The manifests,
the ServiceMonitor component and docker-compose.yml are checked without a cluster.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
import yaml
from conftest import REPO, free_port
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from builder_core import build, pattern_names
from builder_core.patterns import load_pattern

# The patterns whose requests are rows of an iris model's four measurements, and data-cache
# (requests by ID), whose V2 requests carry the preprocessed tensor instead. prep-pred's rows
# service serves data-cache's model (its prep service has its own tests).
ROW_PATTERNS = [
    name
    for name in pattern_names()
    if load_pattern(name).info.request == "rows"
    and load_pattern(name).info.sample_model.startswith("iris")
]
PATTERNS = [*ROW_PATTERNS, "data-cache"]
TYPICAL = [[5.0, 3.4, 1.5, 0.2], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.6, 2.0]]
DIGITS = REPO / "sample_models" / "digits"
PREDICT_200 = {"method": "POST", "route": "/predict", "status": "200"}

by_pattern = pytest.mark.parametrize("pattern", PATTERNS)


def http(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """GET (or POST ``body``, as JSON); the status, the headers (lower-case names), the answer."""
    # urllib would declare a POSTed body a form, which the services refuse with 415.
    sent = {"content-type": "application/json", **(headers or {})} if body is not None else headers
    request = urllib.request.Request(url, data=body, headers=sent or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return (
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read(),
            )
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


@dataclass
class Service:
    """A generated service started by its run.sh."""

    pattern: str
    project: Path
    process: subprocess.Popen[bytes]
    log: Path
    port: int
    # A metrics file of an earlier run, put in the metrics folder before the start.
    stale: Path | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def name(self) -> str:
        return self.project.name

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def client(self) -> httpclient.InferenceServerClient:
        return httpclient.InferenceServerClient(f"127.0.0.1:{self.port}", network_timeout=10.0)

    def workers(self) -> list[int]:
        """The pids of gunicorn's worker processes."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return sorted(int(pid) for pid in children.read_text().split())

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def start(project: Path, python: Path, folder: Path, **env: str) -> Service:
    """Start ``project`` with its run.sh; return once /v2/health/ready answers 200."""
    port = free_port()
    environment = {
        **os.environ,
        "PATH": f"{python.parent}:{os.environ['PATH']}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKERS": "2",
        "TMPDIR": str(folder),
        **env,
    }
    log = folder / f"server-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(project / "run.sh")],
            cwd="/",
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    service = Service(project.name, project, process, log, port)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{project.name} exited with {process.returncode}:\n{service.output()}")
        try:
            if http(f"{service.base}/v2/health/ready")[0] == 200:
                return service
        except OSError:
            pass
        time.sleep(0.2)
    service.stop()
    pytest.fail(f"{project.name} was not ready within 60 s:\n{service.output()}")


def metric(service: Service, name: str, **labels: str) -> list[float]:
    """The values of every sample of /metrics named ``name`` with ``labels``."""
    status, _, body = http(f"{service.base}/metrics")
    assert status == 200
    return [
        sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]


def wait_for_metric(service: Service, expected: float, name: str, **labels: str) -> float:
    """Poll until the metric reads ``expected`` (the other worker publishes every half second)."""
    deadline = time.monotonic() + 5
    value = sum(metric(service, name, **labels))
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        value = sum(metric(service, name, **labels))
    return value


def stale_counter(folder: Path) -> Path:
    """A counter file as an earlier run would have left it: 1000 answered predictions."""
    folder.mkdir(parents=True, exist_ok=True)
    code = (
        "from prometheus_client import Counter\n"
        f"counter = Counter('http_requests', 'old', {list(PREDICT_200)!r})\n"
        f"counter.labels(**{PREDICT_200!r}).inc(1000)"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    (stale,) = folder.glob("counter_*.db")
    return stale


@pytest.fixture(scope="module", params=PATTERNS)
def service(
    request: pytest.FixtureRequest,
    generated_project: Callable[[str], Path],
    service_python: Callable[[Path], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    """Each pattern's service: two workers, JSON logs, a metrics folder with a stale file in it."""
    project = generated_project(request.param)
    folder = tmp_path_factory.mktemp(f"v2-{request.param}")
    stale = stale_counter(folder / "metrics")
    started = start(
        project,
        service_python(project),
        folder,
        PROMETHEUS_MULTIPROC_DIR=str(folder / "metrics"),
        LOG_FORMAT="json",
        REQUEST_LOG="true",
    )
    started.pattern = request.param
    started.stale = stale
    try:
        yield started
    finally:
        started.stop()


def sample_rows(service: Service) -> tuple[np.ndarray, list[list[float]]]:
    """Model input rows, and the scores the service's own endpoints give them."""
    if service.pattern == "data-cache":
        # The sample item (digit-0000.png) as the service preprocesses it, recorded when the
        # sample model was trained: V2 takes the tensor, /predict/test the item's ID.
        reference = json.loads((DIGITS / "reference.json").read_text())
        rows = np.asarray(reference["data_sample"], dtype=np.float32)
        status, _, body = http(f"{service.base}/predict/test")
    else:
        rows = np.asarray(TYPICAL, dtype=np.float32)
        payload = json.dumps({"data": TYPICAL}).encode()
        status, _, body = http(
            f"{service.base}/predict", payload, {"content-type": "application/json"}
        )
    assert status == 200, body
    scores: list[list[float]] = json.loads(body)["prediction"]
    return rows, scores


def infer_input(
    rows: np.ndarray, datatype: str = "FP32", name: str = "input"
) -> httpclient.InferInput:
    tensor = httpclient.InferInput(name, list(rows.shape), datatype)
    tensor.set_data_from_numpy(rows, binary_data=False)
    return tensor


# --------------------------------------------------------------------------- V2, with tritonclient


def test_v2_health_and_metadata(service: Service) -> None:
    client = service.client()
    version = yaml.safe_load((service.project / ".builder-answers.yml").read_text())["variables"][
        "image_tag"
    ]
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.get_server_metadata() == {
        "name": service.name,
        "version": version,
        "extensions": ["binary_tensor_data"],
    }
    assert client.is_model_ready(service.name)
    assert client.is_model_ready(service.name, model_version=version)
    assert not client.is_model_ready("another-model")
    assert not client.is_model_ready(service.name, model_version="9.9.9")
    meta = client.get_model_metadata(service.name, model_version=version)
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["versions"] == [version]
    width = 256 if service.pattern == "data-cache" else 4
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, width]}]
    # Every output of the model: the label tensor and the class scores.
    outputs = {output["name"]: output for output in meta["outputs"]}
    assert set(outputs) == {"label", "probabilities"}
    assert outputs["probabilities"]["datatype"] == "FP32"
    assert outputs["label"]["datatype"] == "INT64"


def test_v2_infer_gives_the_services_own_scores(service: Service) -> None:
    rows, expected = sample_rows(service)
    client = service.client()
    output = httpclient.InferRequestedOutput("probabilities", binary_data=False)
    result = client.infer(service.name, [infer_input(rows)], outputs=[output], request_id="req-1")
    scores = result.as_numpy("probabilities")
    assert scores.shape == (len(rows), len(expected[0]))
    np.testing.assert_allclose(scores, np.asarray(expected), atol=1e-6)
    response = result.get_response()
    assert response["id"] == "req-1"
    assert response["model_name"] == service.name
    # tritonclient's defaults: binary input data, and (no outputs named) every output in binary.
    binary = httpclient.InferInput("input", list(rows.shape), "FP32")
    binary.set_data_from_numpy(rows)
    again = client.infer(service.name, [binary])
    np.testing.assert_allclose(again.as_numpy("probabilities"), scores)
    answered = {output["name"] for output in again.get_response()["outputs"]}
    assert answered == {"label", "probabilities"}


def refusal(call: Callable[[], Any]) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


def test_v2_refusals_reach_the_client_as_errors(service: Service) -> None:
    rows, _ = sample_rows(service)
    client = service.client()
    wrong_type = refusal(
        lambda: client.infer(service.name, [infer_input(rows.astype(np.float64), "FP64")])
    )
    assert wrong_type.status() == "400"
    assert "datatype" in wrong_type.message()
    assert "FP64" in wrong_type.message()
    wrong_name = refusal(lambda: client.infer(service.name, [infer_input(rows, name="x")]))
    assert wrong_name.status() == "400"
    wrong_shape = refusal(lambda: client.infer(service.name, [infer_input(rows[:, :3])]))
    assert wrong_shape.status() == "400" and "shape" in wrong_shape.message()
    unknown = refusal(lambda: client.infer("another-model", [infer_input(rows)]))
    assert unknown.status() == "404"
    nan = httpclient.InferInput("input", list(rows.shape), "FP32")
    nan.set_data_from_numpy(np.full_like(rows, np.nan))  # binary: checked as strictly as JSON
    refused = refusal(lambda: client.infer(service.name, [nan]))
    assert refused.status() == "400" and "NaN" in refused.message()
    too_many = np.repeat(rows[:1], 1001, axis=0)
    # 1001 rows: over MAX_ROWS, or (256 values a row) over the body limit first: 413 either way.
    assert refusal(lambda: client.infer(service.name, [infer_input(too_many)])).status() == "413"


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"1e999", b'"1.0"', b"true", b"null"])
def test_v2_non_numbers_are_400_over_http(service: Service, literal: bytes) -> None:
    rows, _ = sample_rows(service)
    values = b", ".join([literal, *[b"0.5"] * (rows.shape[1] - 1)])
    body = b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, %d], "data": [%s]}]}'
    status, _, answer = http(
        f"{service.base}/v2/models/{service.name}/infer", body % (rows.shape[1], values)
    )
    assert status == 400, answer
    assert json.loads(answer)["error"]


# --------------------------------------------------------------------------- declared bodies


def raw_answer(base: str, head: bytes, seconds: float = 5) -> bytes:
    """Send ``head`` (request line and headers, no body) on a new connection; the first answer."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=seconds) as sock:
        sock.sendall(head)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        return answer


def test_a_body_too_large_to_send_is_413_before_100_continue(service: Service) -> None:
    head = (
        b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Content-Length: 50000000\r\nExpect: 100-continue\r\n\r\n"
    )
    answer = raw_answer(service.base, head)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_cross_site_simple_request_is_415(service: Service, content_type: str) -> None:
    body = json.dumps({"data": [[1.0]]}).encode()
    status, _, answer = http(f"{service.base}/predict", body, {"content-type": content_type})
    assert status == 415, answer


# --------------------------------------------------------------------------- request IDs


def test_request_ids_are_kept_or_made_and_always_echoed(service: Service) -> None:
    calls = [
        ("/health", None),
        ("/v2/health/ready", None),
        (f"/v2/models/{service.name}", None),
        ("/predict", b"{}"),  # refused (422), by the fast path where there is one
        ("/no-such-page", None),
    ]
    for path, body in calls:
        headers = {
            "X-Request-ID": f"client-id-{path.count('/')}",
            "content-type": "application/json",
        }
        _, answer_headers, _ = http(f"{service.base}{path}", body, headers)
        assert answer_headers["x-request-id"] == headers["X-Request-ID"], path
        _, answer_headers, _ = http(f"{service.base}{path}", body, {"X-Request-ID": "no spaces"})
        assert re.fullmatch(r"[0-9a-f]{32}", answer_headers["x-request-id"]), path


# --------------------------------------------------------------------------- metrics


def per_worker_predictions(folder: Path, scratch: Path) -> dict[str, float]:
    """Answered POST /predict 200s in each worker's counter file, as published so far.

    Each file is read alone: copied to a folder of its own and collected from there.
    """
    counts: dict[str, float] = {}
    for path in folder.glob("counter_*.db"):
        alone = scratch / path.stem
        alone.mkdir(exist_ok=True)
        shutil.copyfile(path, alone / path.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))  # type: ignore[no-untyped-call]
        value = registry.get_sample_value("http_requests_total", PREDICT_200)
        if value:
            counts[path.stem] = value
    return counts


def predict_body(service: Service) -> bytes:
    if service.pattern == "data-cache":
        answers = yaml.safe_load((service.project / ".builder-answers.yml").read_text())
        return json.dumps({"data": answers["variables"]["sample_data_id"]}).encode()
    return json.dumps({"data": TYPICAL[:1]}).encode()


def test_counts_add_up_across_both_workers(service: Service, tmp_path: Path) -> None:
    folder = service.log.parent / "metrics"
    assert service.stale is not None
    assert not service.stale.exists(), "run.sh left an earlier run's metrics file"
    # Idle for longer than a publication interval: every earlier request is in the totals now.
    time.sleep(1.2)
    before = sum(metric(service, "http_requests_total", **PREDICT_200))
    url = f"{service.base}/predict"
    body = predict_body(service)
    sent = 0
    # Each request on a new connection; until both workers have answered some (usually at once).
    with ThreadPoolExecutor(8) as pool:
        for _ in range(20):
            statuses = list(
                pool.map(
                    lambda _: http(url, body, {"content-type": "application/json"})[0], range(16)
                )
            )
            assert statuses == [200] * 16
            sent += 16
            time.sleep(0.6)
            if len(per_worker_predictions(folder, tmp_path)) >= 2:
                break
    assert len(per_worker_predictions(folder, tmp_path)) == 2, "one worker answered everything"
    total = wait_for_metric(service, before + sent, "http_requests_total", **PREDICT_200)
    assert total == before + sent
    timed = sum(
        metric(service, "http_request_duration_seconds_count", method="POST", route="/predict")
    )
    assert timed >= sent
    assert sum(metric(service, "model_inference_duration_seconds_count")) >= sent


def test_the_model_is_described_once_for_the_service(service: Service) -> None:
    answers = yaml.safe_load((service.project / ".builder-answers.yml").read_text())
    series = metric(
        service, "model_info", sha256=answers["model"]["sha256"], platform="onnxruntime_onnx"
    )
    # One series, not one per worker.
    assert series == [1.0]


# --------------------------------------------------------------------------- logs


def log_lines(service: Service) -> list[dict[str, Any]]:
    return [json.loads(line) for line in service.output().splitlines() if line.startswith("{")]


def test_json_logs_one_line_per_request(service: Service) -> None:
    request_id = f"log-check-{service.pattern}"
    path = f"/v2/models/{service.name}/ready"
    assert http(f"{service.base}{path}", None, {"X-Request-ID": request_id})[0] == 200
    deadline = time.monotonic() + 5
    found: list[dict[str, Any]] = []
    while not found and time.monotonic() < deadline:
        time.sleep(0.2)
        found = [line for line in log_lines(service) if line.get("request_id") == request_id]
    assert len(found) == 1, service.output()[-2000:]
    (line,) = found
    assert line["logger"] == "src.app.requests"
    assert (line["method"], line["path"], line["status"]) == ("GET", path, 200)
    assert line["route"] == "/v2/models/{model_name}/ready"
    assert line["duration_ms"] > 0
    # Every line is JSON, the service's own and gunicorn's too (the model-ready line included).
    text_lines = [
        line for line in service.output().splitlines() if line and not line.startswith("{")
    ]
    assert not text_lines, text_lines[:5]
    loggers = {(line["logger"], line["level"]) for line in log_lines(service)}
    assert ("src.app.main", "INFO") in loggers
    assert ("gunicorn.error", "INFO") in loggers


def test_text_logs_errors_only_by_default_and_a_fresh_metrics_folder(
    generated_project: Callable[[str], Path],
    service_python: Callable[[Path], Path],
    tmp_path: Path,
) -> None:
    project = generated_project("web-single")
    running = start(project, service_python(project), tmp_path)
    try:
        (folder,) = tmp_path.glob("metrics.*")
        assert http(f"{running.base}/health", None, {"X-Request-ID": "text-ok"})[0] == 200
        assert http(f"{running.base}/nowhere", None, {"X-Request-ID": "text-404"})[0] == 404
        time.sleep(1)
        lines = running.output().splitlines()
        assert not [line for line in lines if "request_id=text-ok" in line]
        (request,) = [line for line in lines if "request_id=text-404" in line]
        pattern = r"\S+\+00:00 \[\d+\] \[INFO\] src\.app\.requests: GET unrouted 404 request_id="
        assert re.match(pattern, request), request
        assert "path=/nowhere " in request
        assert any("[INFO] src.app.main: model ready" in line for line in lines)
        assert any(path.name.startswith("counter_") for path in folder.iterdir())
    finally:
        assert running.stop() == 0
    # The metrics folder run.sh made goes with the service.
    assert not folder.exists()


def test_a_killed_worker_keeps_its_counts(
    generated_project: Callable[[str], Path],
    service_python: Callable[[Path], Path],
    tmp_path: Path,
) -> None:
    project = generated_project("web-single")
    folder = tmp_path / "metrics"
    running = start(
        project, service_python(project), tmp_path, PROMETHEUS_MULTIPROC_DIR=str(folder)
    )
    try:
        body = predict_body(running)
        for _ in range(30):
            assert (
                http(f"{running.base}/predict", body, {"content-type": "application/json"})[0]
                == 200
            )
        assert wait_for_metric(running, 30, "http_requests_total", **PREDICT_200) == 30
        victim = running.workers()[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while (
            victim in running.workers() or len(running.workers()) < 2
        ) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert victim not in running.workers()
        wait_ready = time.monotonic() + 30
        while http(f"{running.base}/v2/health/ready")[0] != 200 and time.monotonic() < wait_ready:
            time.sleep(0.2)
        # Its counts stay in the totals; its live gauge (model_info) is gone, not doubled.
        assert sum(metric(running, "http_requests_total", **PREDICT_200)) == 30
        assert not list(folder.glob(f"gauge_livemax_{victim}.db"))
        assert metric(running, "model_info", platform="onnxruntime_onnx") == [1.0]
    finally:
        running.stop()


# --------------------------------------------------------------------------- manifests, compose


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every pattern, generated under another name than its own."""
    return {
        pattern: build(
            name=f"{pattern}-obs", pattern=pattern, output_dir=tmp_path_factory.mktemp(pattern)
        ).target
        for pattern in pattern_names()
    }


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def api_deployment(project: Path) -> dict[str, Any]:
    deployment: dict[str, Any] = load(project / "manifests" / "deployment.yaml")
    return deployment


def api_container(project: Path) -> dict[str, Any]:
    containers = api_deployment(project)["spec"]["template"]["spec"]["containers"]
    api: dict[str, Any] = next(c for c in containers if c["name"] == "api")
    return api


@pytest.mark.parametrize("pattern", pattern_names())
def test_pods_are_annotated_for_scraping(projects: dict[str, Path], pattern: str) -> None:
    annotations = api_deployment(projects[pattern])["spec"]["template"]["metadata"]["annotations"]
    (port,) = [
        p["containerPort"] for p in api_container(projects[pattern])["ports"] if p["name"] == "http"
    ]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": "/metrics",
    }
    env = {item["name"]: item.get("value") for item in api_container(projects[pattern])["env"]}
    assert env["LOG_FORMAT"] == "json"


@pytest.mark.parametrize("pattern", pattern_names())
def test_probes_use_the_v2_health_endpoints(projects: dict[str, Path], pattern: str) -> None:
    api = api_container(projects[pattern])
    paths = {
        probe: api[probe]["httpGet"]["path"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    assert paths == {
        "startupProbe": "/v2/health/ready",
        "readinessProbe": "/v2/health/ready",
        "livenessProbe": "/v2/health/live",
    }
    assert {api[probe]["httpGet"]["port"] for probe in paths} == {"http"}


@pytest.mark.parametrize("pattern", pattern_names())
def test_servicemonitor_is_an_optional_component(projects: dict[str, Path], pattern: str) -> None:
    manifests = projects[pattern] / "manifests"
    component = manifests / "components" / "servicemonitor"
    kustomization = load(component / "kustomization.yaml")
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1alpha1"
    assert kustomization["kind"] == "Component"
    assert kustomization["resources"] == ["servicemonitor.yaml"]
    monitor = load(component / "servicemonitor.yaml")
    service = load(manifests / "service.yaml")
    assert (monitor["apiVersion"], monitor["kind"]) == (
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
    )
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert monitor["spec"]["namespaceSelector"] == {
        "matchNames": [service["metadata"]["namespace"]]
    }
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    # Off by default: the CRD may not exist in the cluster.
    main = load(manifests / "kustomization.yaml")
    assert "components" not in main
    assert not any("servicemonitor" in resource for resource in main["resources"])
    assert "components/servicemonitor" in (manifests / "kustomization.yaml").read_text()


@pytest.mark.parametrize("pattern", pattern_names())
def test_compose_labels_the_api_for_scraping(projects: dict[str, Path], pattern: str) -> None:
    api = load(projects[pattern] / "docker-compose.yml")["services"]["api"]
    port = str(api_container(projects[pattern])["ports"][0]["containerPort"])
    assert api["labels"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": port,
        "prometheus.io/path": "/metrics",
    }
    assert f"{port}:{port}" in api["ports"]
