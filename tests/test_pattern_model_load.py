"""The model-load pattern for real: its loader against real stores, then its server on the result.

The loader runs as the generated project runs it (``python -m src.loader`` in the project's venv,
configured by its environment) against an HTTP server, a local file and an S3-compatible server
(moto in server mode), all on 127.0.0.1; failures are a checksum mismatch, a 404 and a server that
drops the connection mid-transfer. End to end, the server started with run.sh serves what the
loader put in place, and refuses to start on a missing or different model.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import boto3  # type: ignore[import-untyped]
import pytest
import yaml
from conftest import REPO, UV, free_port

from builder_core import build

PATTERN = "model-load"
MODEL_NAME = "iris_svc.onnx"
MODEL_BYTES = (REPO / "sample_models" / "iris" / "model.onnx").read_bytes()
SHA256 = hashlib.sha256(MODEL_BYTES).hexdigest()
TYPICAL = {
    "setosa": [5.0, 3.4, 1.5, 0.2],
    "versicolor": [5.9, 2.8, 4.3, 1.3],
    "virginica": [6.6, 3.0, 5.6, 2.0],
}


# --------------------------------------------------------------------------- stores


class StoreHandler(http.server.BaseHTTPRequestHandler):
    """A model store over HTTP with the ways a real one fails, one path each."""

    hits: ClassVar[Counter[str]] = Counter()
    lock: ClassVar[threading.Lock] = threading.Lock()
    # Set to let a stalled transfer finish (it has been abandoned by then).
    release: ClassVar[threading.Event] = threading.Event()

    def do_GET(self) -> None:
        with self.lock:
            self.hits[self.path] += 1
            hits = self.hits[self.path]
        if self.path == "/model.onnx":
            self._send(MODEL_BYTES)
        elif self.path == "/corrupt.onnx":
            self._send(MODEL_BYTES[:-1] + bytes([MODEL_BYTES[-1] ^ 1]))
        elif self.path == "/dropped.onnx":
            self._send(MODEL_BYTES, cut=True)
        elif self.path == "/flaky.onnx":
            self._send(MODEL_BYTES, cut=hits <= 2)
        elif self.path == "/stalled.onnx":
            self._send(MODEL_BYTES, cut=True, stall=True)
        else:
            self.send_error(404)

    def _send(self, body: bytes, cut: bool = False, stall: bool = False) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cut:
            # Half the promised body, then the connection goes away (or hangs).
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            if stall:
                self.release.wait(60)
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests read the loader's output and the hit counts."""


@pytest.fixture(scope="module")
def store() -> Iterator[str]:
    """The base URL of the HTTP store on 127.0.0.1."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StoreHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        StoreHandler.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
            return
        time.sleep(0.1)
    pytest.fail(f"nothing listened on {port}:\n{log.read_text()}")


@pytest.fixture(scope="module")
def s3_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """moto's S3 server on 127.0.0.1 with s3://models/iris/<model>; the loader's environment."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        # fsspec's own configuration variables: how a user points s3fs at MinIO and the like.
        "FSSPEC_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    try:
        _wait_for_port(port, process, log)
        client = boto3.client(
            "s3",
            endpoint_url=env["FSSPEC_S3_ENDPOINT_URL"],
            region_name=env["AWS_DEFAULT_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )
        client.create_bucket(Bucket="models")
        client.put_object(Bucket="models", Key=f"iris/{MODEL_NAME}", Body=MODEL_BYTES)
        yield env
    finally:
        process.terminate()
        process.wait(timeout=30)


# --------------------------------------------------------------------------- the loader


@pytest.fixture(scope="module")
def project(generated_project: Callable[[str], Path]) -> Path:
    """The model-load service generated with the default variables."""
    return generated_project(PATTERN)


@pytest.fixture(scope="module")
def python(project: Path, service_python: Callable[[Path], Path]) -> Path:
    """The project's venv: its requirements-dev.txt includes requirements-loader.txt."""
    return service_python(project)


@dataclass
class Loaded:
    """One loader run: exit status, output, and what is left in the target's folder."""

    status: int
    stdout: str
    stderr: str
    target: Path

    def files(self) -> list[str]:
        folder = self.target.parent
        return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


def run_loader(python: Path, project: Path, target: Path, uri: str, **settings: str) -> Loaded:
    """``python -m src.loader`` from the project, with only its settings in the environment."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(target.parent.parent),
        "MODEL_URI": uri,
        "MODEL_SHA256": SHA256,
        "MODEL_FILEPATH": str(target),
        "LOADER_BACKOFF_SECONDS": "0.05",
        **settings,
    }
    result = subprocess.run(
        [str(python), "-m", "src.loader"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    return Loaded(result.returncode, result.stdout, result.stderr, target)


@pytest.mark.slow
def test_loads_over_http(python: Path, project: Path, store: str, tmp_path: Path) -> None:
    loaded = run_loader(python, project, tmp_path / "volume" / MODEL_NAME, f"{store}/model.onnx")
    assert loaded.status == 0, loaded.stderr
    assert loaded.target.read_bytes() == MODEL_BYTES
    assert loaded.files() == [MODEL_NAME]
    assert loaded.target.stat().st_mode & 0o777 == 0o644
    assert f"sha256 {SHA256} verified" in loaded.stdout


@pytest.mark.slow
def test_loads_a_local_file(python: Path, project: Path, tmp_path: Path) -> None:
    source = tmp_path / "store" / "model.onnx"
    source.parent.mkdir()
    source.write_bytes(MODEL_BYTES)
    loaded = run_loader(python, project, tmp_path / "volume" / MODEL_NAME, source.as_uri())
    assert loaded.status == 0, loaded.stderr
    assert loaded.target.read_bytes() == MODEL_BYTES
    assert loaded.files() == [MODEL_NAME]


@pytest.mark.slow
def test_loads_from_an_s3_compatible_store(
    python: Path, project: Path, s3_env: dict[str, str], tmp_path: Path
) -> None:
    target = tmp_path / "volume" / MODEL_NAME
    loaded = run_loader(python, project, target, f"s3://models/iris/{MODEL_NAME}", **s3_env)
    assert loaded.status == 0, loaded.stderr
    assert loaded.target.read_bytes() == MODEL_BYTES
    assert loaded.files() == [MODEL_NAME]


@pytest.mark.slow
def test_a_missing_s3_object_is_not_found(
    python: Path, project: Path, s3_env: dict[str, str], tmp_path: Path
) -> None:
    uri = "s3://models/iris/other.onnx"
    loaded = run_loader(python, project, tmp_path / "volume" / MODEL_NAME, uri, **s3_env)
    assert loaded.status == 3, loaded.stderr
    assert loaded.stderr == f"model-loader: not found: {uri}\n"
    assert loaded.files() == []


@pytest.mark.slow
def test_checksum_mismatch_fails_and_leaves_no_file(
    python: Path, project: Path, store: str, tmp_path: Path
) -> None:
    loaded = run_loader(python, project, tmp_path / "volume" / MODEL_NAME, f"{store}/corrupt.onnx")
    assert loaded.status == 4
    assert loaded.stderr.count("\n") == 1
    assert loaded.stderr.startswith("model-loader: checksum mismatch:")
    assert f"MODEL_SHA256 is {SHA256}" in loaded.stderr
    assert loaded.files() == []


@pytest.mark.slow
def test_a_404_fails_at_once_and_leaves_no_file(
    python: Path, project: Path, store: str, tmp_path: Path
) -> None:
    before = StoreHandler.hits["/absent.onnx"]
    uri = f"{store}/absent.onnx"
    loaded = run_loader(python, project, tmp_path / "volume" / MODEL_NAME, uri)
    assert loaded.status == 3
    assert loaded.stderr == f"model-loader: not found: {uri}\n"
    assert loaded.files() == []
    # Not found is final: no retry.
    assert StoreHandler.hits["/absent.onnx"] == before + 1


@pytest.mark.slow
def test_a_dropped_connection_is_retried_then_fails_and_leaves_no_file(
    python: Path, project: Path, store: str, tmp_path: Path
) -> None:
    before = StoreHandler.hits["/dropped.onnx"]
    target = tmp_path / "volume" / MODEL_NAME
    loaded = run_loader(python, project, target, f"{store}/dropped.onnx", LOADER_ATTEMPTS="3")
    assert loaded.status == 6
    assert loaded.stderr.count("\n") == 1
    assert loaded.stderr.startswith(
        "model-loader: retries exhausted after 3 attempts: connection dropped mid-transfer"
    )
    assert loaded.stdout.count("connection dropped mid-transfer") == 2
    assert loaded.files() == []
    assert StoreHandler.hits["/dropped.onnx"] == before + 3


@pytest.mark.slow
def test_a_transfer_that_fails_twice_succeeds_on_the_third_attempt(
    python: Path, project: Path, store: str, tmp_path: Path
) -> None:
    loaded = run_loader(python, project, tmp_path / "volume" / MODEL_NAME, f"{store}/flaky.onnx")
    assert loaded.status == 0, loaded.stderr
    assert "attempt 1/5 failed: connection dropped mid-transfer" in loaded.stdout
    assert "attempt 2/5 failed" in loaded.stdout
    assert loaded.target.read_bytes() == MODEL_BYTES
    assert loaded.files() == [MODEL_NAME]


@pytest.mark.slow
def test_a_loader_stopped_mid_transfer_leaves_no_file(
    python: Path, project: Path, store: str, tmp_path: Path
) -> None:
    target = tmp_path / "volume" / MODEL_NAME
    env = {
        "PATH": os.environ["PATH"],
        "MODEL_URI": f"{store}/stalled.onnx",
        "MODEL_SHA256": SHA256,
        "MODEL_FILEPATH": str(target),
    }
    log = tmp_path / "loader.log"
    before = StoreHandler.hits["/stalled.onnx"]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(python), "-m", "src.loader"], cwd=project, env=env, stdout=sink, stderr=sink
        )
    deadline = time.monotonic() + 60
    # The transfer is under way (half the body sent), into a temporary name beside the target.
    while StoreHandler.hits["/stalled.onnx"] == before or not list(target.parent.glob("*.part")):
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            process.wait(timeout=30)
            pytest.fail(f"the loader never got to the transfer:\n{log.read_text()}")
        time.sleep(0.05)
    assert not target.exists()
    process.terminate()
    assert process.wait(timeout=30) == 128 + signal.SIGTERM, log.read_text()
    assert list(target.parent.iterdir()) == []


@pytest.mark.slow
def test_a_verified_model_in_place_is_not_fetched_again(
    python: Path, project: Path, store: str, tmp_path: Path
) -> None:
    target = tmp_path / "volume" / MODEL_NAME
    assert run_loader(python, project, target, f"{store}/model.onnx").status == 0
    before = StoreHandler.hits["/model.onnx"]
    again = run_loader(python, project, target, f"{store}/model.onnx")
    assert again.status == 0, again.stderr
    assert "not fetched again" in again.stdout
    assert StoreHandler.hits["/model.onnx"] == before


@pytest.mark.slow
def test_another_model_in_place_is_replaced(
    python: Path, project: Path, store: str, tmp_path: Path
) -> None:
    target = tmp_path / "volume" / MODEL_NAME
    target.parent.mkdir()
    target.write_bytes(b"an older model")
    loaded = run_loader(python, project, target, f"{store}/model.onnx")
    assert loaded.status == 0, loaded.stderr
    assert target.read_bytes() == MODEL_BYTES
    assert loaded.files() == [MODEL_NAME]


@pytest.mark.slow
def test_file_uris_need_fsspec_alone(
    project: Path, store: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if UV is None:
        pytest.fail("uv is required to build a virtualenv (pip install uv)")
    pins = (project / "requirements-loader.txt").read_text().splitlines()
    fsspec = next(line for line in pins if line.startswith("fsspec=="))
    venv = tmp_path_factory.mktemp("fsspec-only") / "venv"
    subprocess.run([UV, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    bare = venv / "bin" / "python"
    subprocess.run([UV, "pip", "install", "-q", "--python", str(bare), fsspec], check=True)
    folder = venv.parent
    source = folder / "store.onnx"
    source.write_bytes(MODEL_BYTES)
    loaded = run_loader(bare, project, folder / "volume" / MODEL_NAME, source.as_uri())
    assert loaded.status == 0, loaded.stderr
    # http needs aiohttp: said in one line, before anything is fetched.
    remote = run_loader(bare, project, folder / "other" / MODEL_NAME, f"{store}/model.onnx")
    assert remote.status == 2
    assert "http:// needs aiohttp (pip install -r requirements-loader.txt)" in remote.stderr
    assert remote.files() == []


# --------------------------------------------------------------------------- end to end


def call(url: str, body: Any = None) -> tuple[int, Any]:
    """GET ``url`` (or POST ``body`` as JSON); the status and the decoded answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


@contextlib.contextmanager
def serving(
    project: Path, python: Path, model: Path, uri: str, log: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The server started with its run.sh on ``model``, as the manifests configure it."""
    port = free_port()
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("MODEL_")}
    env = {
        **inherited,
        "PATH": f"{python.parent}:{os.environ['PATH']}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKERS": "1",
        "MODEL_FILEPATH": str(model),
        "MODEL_SHA256": SHA256,
        "MODEL_URI": uri,
    }
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(project / "run.sh")], cwd="/", env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=30)


def ready_statuses(base: str, process: subprocess.Popen[bytes], seconds: float) -> list[int]:
    """Poll /ready until it is 200, the server exits, or time runs out; every status seen."""
    seen: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(urllib.error.URLError, ConnectionError):
            seen.append(call(f"{base}/ready")[0])
            if seen[-1] == 200:
                break
        time.sleep(0.2)
    return seen


@pytest.mark.slow
def test_the_server_serves_the_model_the_loader_put_in_place(
    python: Path, project: Path, store: str, tmp_path: Path
) -> None:
    uri = f"{store}/model.onnx"
    loaded = run_loader(python, project, tmp_path / "volume" / MODEL_NAME, uri)
    assert loaded.status == 0, loaded.stderr
    log = tmp_path / "server.log"
    with serving(project, python, loaded.target, uri, log) as (base, process):
        assert ready_statuses(base, process, 60)[-1:] == [200], log.read_text()
        body = {"data": list(TYPICAL.values())}
        assert call(f"{base}/predict/label", body) == (200, {"prediction": list(TYPICAL)})
        status, scores = call(f"{base}/predict", body)
        assert status == 200
        assert all(len(row) == 3 and abs(sum(row) - 1) < 1e-4 for row in scores["prediction"])
        status, meta = call(f"{base}/metadata")
        assert status == 200
        assert (meta["model_uri"], meta["model_sha256"]) == (uri, SHA256)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "reason"),
    [(None, "model not found"), (b"not the model", "checksum mismatch")],
    ids=["missing", "another model"],
)
def test_the_server_never_serves_without_the_verified_model(
    python: Path, project: Path, tmp_path: Path, model: bytes | None, reason: str
) -> None:
    path = tmp_path / "volume" / MODEL_NAME
    if model is not None:
        path.parent.mkdir()
        path.write_bytes(model)
    log = tmp_path / "server.log"
    with serving(project, python, path, path.as_uri(), log) as (base, process):
        statuses = ready_statuses(base, process, 60)
        status = process.wait(timeout=60)
    assert status != 0
    assert 200 not in statuses
    assert reason in log.read_text()


# --------------------------------------------------------------------------- deployment files


def _compose(project: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((project / "docker-compose.yml").read_text())
    return loaded


def _pod(project: Path) -> dict[str, Any]:
    deployment = yaml.safe_load((project / "manifests" / "deployment.yaml").read_text())
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def test_compose_loads_once_into_a_named_volume_before_the_server(project: Path) -> None:
    compose = _compose(project)
    api, loader = compose["services"]["api"], compose["services"]["model-loader"]
    assert "model" in compose["volumes"]
    assert loader["build"]["target"] == "loader"
    assert loader["restart"] == "no"
    assert "model:/models" in loader["volumes"]
    assert api["depends_on"]["model-loader"] == {"condition": "service_completed_successfully"}
    assert api["volumes"] == ["model:/models:ro"]
    for service in (api, loader):
        assert service["environment"]["MODEL_SHA256"] == SHA256
        assert service["environment"]["MODEL_FILEPATH"] == f"/models/{MODEL_NAME}"
    # The stand-in store: the project's own model over HTTP, healthy before the loader starts.
    assert loader["environment"]["MODEL_URI"] == f"http://model-store:8080/{MODEL_NAME}"
    assert loader["depends_on"]["model-store"] == {"condition": "service_healthy"}
    assert compose["services"]["model-store"]["build"]["target"] == "model-store"


def test_kubernetes_loads_in_an_init_container_into_an_empty_dir(project: Path) -> None:
    pod = _pod(project)
    (loader,) = pod["initContainers"]
    (api,) = pod["containers"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["model"]["emptyDir"] == {"sizeLimit": "1Gi"}
    mounts = {mount["name"]: mount for mount in loader["volumeMounts"]}
    assert mounts["model"] == {"name": "model", "mountPath": "/models"}
    assert {"name": "model", "mountPath": "/models", "readOnly": True} in api["volumeMounts"]
    assert loader["image"] == "iris-classifier-loader:0.1.0"
    assert set(loader["resources"]) == {"requests", "limits"}
    assert loader["securityContext"]["readOnlyRootFilesystem"] is True
    assert loader["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    for container in (loader, api):
        env = {item["name"]: item["value"] for item in container["env"]}
        assert env["MODEL_SHA256"] == SHA256
        assert env["MODEL_FILEPATH"] == f"/models/{MODEL_NAME}"
        assert env["MODEL_URI"] == f"file:///seed/{MODEL_NAME}"
    # The stand-in store in Kubernetes: the ConfigMap `make deploy` creates, read-only.
    assert volumes["model-seed"]["configMap"] == {"name": "iris-classifier-model-seed"}
    assert mounts["model-seed"]["readOnly"] is True


def test_the_server_image_holds_no_model(project: Path) -> None:
    dockerfile = (project / "Dockerfile").read_text()
    stages = dockerfile.split("\nFROM ")
    assert stages[-1].startswith("python:3.11-slim AS api")
    server = stages[-1]
    assert MODEL_NAME not in server.replace(f"MODEL_FILEPATH=/models/{MODEL_NAME}", "")
    assert "COPY models/label.json models/" in server
    assert any(stage.startswith("python:3.11-slim AS loader\n") for stage in stages)
    loader = next(stage for stage in stages if stage.startswith("python:3.11-slim AS loader\n"))
    assert "COPY src/__init__.py src/loader.py src/" in loader
    assert 'ENTRYPOINT ["python", "-m", "src.loader"]' in loader


def test_a_store_of_your_own_replaces_the_stand_in(tmp_path: Path) -> None:
    variables = yaml.safe_load((REPO / "vars.yaml").read_text())
    uri = f"s3://team-models/iris/{MODEL_NAME}"
    variables.update(model_uri=uri, model_volume_size_limit="256Mi")
    (tmp_path / "vars.yaml").write_text(yaml.safe_dump(variables))
    project = build(
        pattern=PATTERN, variable_file=tmp_path / "vars.yaml", output_dir=tmp_path
    ).target
    compose = _compose(project)
    assert set(compose["services"]) == {"api", "model-loader"}
    assert "depends_on" not in compose["services"]["model-loader"]
    pod = _pod(project)
    assert [volume["name"] for volume in pod["volumes"]] == ["tmp", "model"]
    assert pod["volumes"][1]["emptyDir"] == {"sizeLimit": "256Mi"}
    for container in pod["initContainers"] + pod["containers"]:
        assert {"name": "MODEL_URI", "value": uri} in container["env"]
    assert "model-store" not in (project / "Dockerfile").read_text()
    ignored = (project / ".dockerignore").read_text().splitlines()
    assert "!models/label.json" in ignored
    assert not any(MODEL_NAME in line for line in ignored)
    assert f"MODEL_URI ?= {uri}" in (project / "Makefile").read_text()
