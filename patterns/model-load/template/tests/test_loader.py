"""The model loader run as a pod runs it (a process configured by its environment), and the
server's own check of the model it is given."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.server
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from src.app.config import MODEL_FILE_NAME, PROJECT_ROOT, Settings, SettingsError
from src.app.main import create_app
from src.app.provenance import ModelSource
from src.loader import redact
from src.ml.classifier import ModelLoadError

MODEL = PROJECT_ROOT / "models" / MODEL_FILE_NAME
MODEL_BYTES = MODEL.read_bytes()
SHA256 = hashlib.sha256(MODEL_BYTES).hexdigest()


@dataclasses.dataclass
class Loaded:
    """What a loader run did: its exit status, its output, and the files left in the folder."""

    status: int
    stdout: str
    stderr: str
    target: Path

    def left_behind(self) -> list[str]:
        folder = self.target.parent
        return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


def run_loader(
    target: Path, uri: str, sha256: str = SHA256, attempts: int = 3, **settings: str
) -> Loaded:
    """``python -m src.loader`` with its settings (and other ``LOADER_*``) in the environment."""
    env = {
        **os.environ,
        "MODEL_URI": uri,
        "MODEL_SHA256": sha256,
        "MODEL_FILEPATH": str(target),
        "LOADER_ATTEMPTS": str(attempts),
        "LOADER_BACKOFF_SECONDS": "0.01",
        **settings,
    }
    result = subprocess.run(
        [sys.executable, "-m", "src.loader"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Loaded(result.returncode, result.stdout, result.stderr, target)


class _Store(http.server.BaseHTTPRequestHandler):
    """A model store over HTTP: the model at /<file name>, 404 for anything else."""

    def do_GET(self) -> None:
        if self.path == "/endless.onnx":
            self.send_response(200)
            self.end_headers()
            with contextlib.suppress(OSError):  # the loader hangs up once it has had enough
                while True:
                    self.wfile.write(b"\0" * 65536)
            return
        if self.path == "/declared-huge.onnx":
            self.send_response(200)
            self.send_header("Content-Length", str(2**41))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(b"\0" * 65536)
            return
        if self.path == "/stalls.onnx":
            self.send_response(200)
            self.send_header("Content-Length", str(len(MODEL_BYTES)))
            self.end_headers()
            self.wfile.write(MODEL_BYTES[:100])
            self.wfile.flush()
            time.sleep(10)
            return
        if self.path != f"/{MODEL_FILE_NAME}":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(MODEL_BYTES)))
        self.end_headers()
        self.wfile.write(MODEL_BYTES)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests read the loader's output, not the store's."""


@pytest.fixture(scope="module")
def store() -> Iterator[str]:
    """The base URL of a model store on 127.0.0.1."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Store)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_loads_a_local_file(tmp_path: Path) -> None:
    loaded = run_loader(tmp_path / "volume" / MODEL_FILE_NAME, MODEL.as_uri())
    assert loaded.status == 0, loaded.stderr
    assert loaded.target.read_bytes() == MODEL_BYTES
    assert loaded.left_behind() == [MODEL_FILE_NAME]


def test_loads_over_http(tmp_path: Path, store: str) -> None:
    loaded = run_loader(tmp_path / MODEL_FILE_NAME, f"{store}/{MODEL_FILE_NAME}")
    assert loaded.status == 0, loaded.stderr
    assert loaded.target.read_bytes() == MODEL_BYTES
    assert loaded.left_behind() == [MODEL_FILE_NAME]


def test_an_endless_stream_stops_at_the_size_cap(tmp_path: Path, store: str) -> None:
    began = time.monotonic()
    loaded = run_loader(tmp_path / MODEL_FILE_NAME, f"{store}/endless.onnx", LOADER_MAX_BYTES="2Mi")
    assert loaded.status == 7, loaded.stderr
    assert "LOADER_MAX_BYTES (2097152)" in loaded.stderr
    assert loaded.left_behind() == []
    assert time.monotonic() - began < 30


def test_a_declared_size_over_the_cap_is_refused_before_reading(tmp_path: Path, store: str) -> None:
    loaded = run_loader(tmp_path / MODEL_FILE_NAME, f"{store}/declared-huge.onnx")
    assert loaded.status == 7, loaded.stderr
    assert f"{2**41} bytes" in loaded.stderr
    assert loaded.left_behind() == []


def test_a_local_file_over_the_cap_is_not_copied(tmp_path: Path) -> None:
    loaded = run_loader(tmp_path / MODEL_FILE_NAME, MODEL.as_uri(), LOADER_MAX_BYTES="100")
    assert loaded.status == 7, loaded.stderr
    assert f"{len(MODEL_BYTES)} bytes" in loaded.stderr
    assert loaded.left_behind() == []


def test_a_store_that_stalls_mid_body_times_out_and_is_retried(tmp_path: Path, store: str) -> None:
    began = time.monotonic()
    loaded = run_loader(
        tmp_path / MODEL_FILE_NAME,
        f"{store}/stalls.onnx",
        attempts=2,
        LOADER_READ_TIMEOUT_SECONDS="1",
    )
    assert loaded.status == 6, loaded.stderr
    assert "attempt 1/2 failed" in loaded.stdout
    assert loaded.left_behind() == []
    assert time.monotonic() - began < 8


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOADER_MAX_BYTES", "lots"),
        ("LOADER_MAX_BYTES", "0"),
        ("LOADER_READ_TIMEOUT_SECONDS", "0"),
        ("LOADER_TIMEOUT_SECONDS", "-1"),
    ],
)
def test_bad_limits_are_settings_errors(tmp_path: Path, name: str, value: str) -> None:
    loaded = run_loader(tmp_path / MODEL_FILE_NAME, MODEL.as_uri(), **{name: value})
    assert loaded.status == 2
    assert name in loaded.stderr


def test_a_model_in_place_is_not_fetched_again(tmp_path: Path) -> None:
    target = tmp_path / MODEL_FILE_NAME
    assert run_loader(target, MODEL.as_uri()).status == 0
    # The source is gone: only a loader that does not fetch again can succeed.
    again = run_loader(target, (tmp_path / "gone.onnx").as_uri())
    assert again.status == 0, again.stderr
    assert "not fetched again" in again.stdout


def test_checksum_mismatch_leaves_no_file(tmp_path: Path) -> None:
    loaded = run_loader(tmp_path / MODEL_FILE_NAME, MODEL.as_uri(), sha256="0" * 64)
    assert loaded.status == 4
    assert loaded.stderr.count("\n") == 1
    assert "checksum mismatch" in loaded.stderr
    assert loaded.left_behind() == []


@pytest.mark.parametrize("where", ["file", "http"])
def test_a_missing_model_is_not_found(tmp_path: Path, store: str, where: str) -> None:
    uri = (tmp_path / "missing.onnx").as_uri() if where == "file" else f"{store}/missing.onnx"
    loaded = run_loader(tmp_path / "volume" / MODEL_FILE_NAME, uri)
    assert loaded.status == 3
    assert loaded.stderr.strip() == f"model-loader: not found: {uri}"
    assert loaded.left_behind() == []


def test_an_unreachable_store_is_retried_then_given_up(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port once the probe is closed: every connection is refused.
    loaded = run_loader(tmp_path / MODEL_FILE_NAME, f"http://127.0.0.1:{port}/m.onnx", attempts=2)
    assert loaded.status == 6
    assert "attempt 1/2 failed" in loaded.stdout
    assert "retries exhausted after 2 attempts" in loaded.stderr
    assert loaded.left_behind() == []


@pytest.mark.parametrize(
    ("uri", "sha256", "expected"),
    [
        ("ftp://example.com/model.onnx", SHA256, "expected file://"),
        ("s3://bucket/models/", SHA256, "names a folder"),
        (MODEL.as_uri(), "not-a-digest", "64 hexadecimal digits"),
    ],
)
def test_bad_settings_are_refused(tmp_path: Path, uri: str, sha256: str, expected: str) -> None:
    loaded = run_loader(tmp_path / MODEL_FILE_NAME, uri, sha256=sha256)
    assert loaded.status == 2
    assert expected in loaded.stderr


def test_a_bad_retry_setting_is_refused(tmp_path: Path) -> None:
    loaded = run_loader(tmp_path / MODEL_FILE_NAME, MODEL.as_uri(), attempts=0)
    assert loaded.status == 2
    assert "LOADER_ATTEMPTS='0'" in loaded.stderr
    assert loaded.left_behind() == []


def test_a_killed_attempt_leaves_no_temporary_file(tmp_path: Path) -> None:
    stale = tmp_path / f".{MODEL_FILE_NAME}.x1y2.part"
    stale.write_bytes(MODEL_BYTES[:10])
    assert run_loader(tmp_path / MODEL_FILE_NAME, MODEL.as_uri()).status == 0
    assert not stale.exists()


def test_metadata_reports_where_the_model_came_from(client: TestClient) -> None:
    meta = client.get("/metadata").json()
    source = ModelSource.from_env(Settings.from_env().model_filepath)
    assert meta["model_uri"] == source.uri
    assert meta["model_sha256"] == source.sha256


SECRET_URIS = {
    "https://alice:hunter2@models.example/m.onnx": "https://***@models.example/m.onnx",
    "https://bucket.s3.amazonaws.com/m.onnx?X-Amz-Credential=AKIA1%2Fx&X-Amz-Signature=0ddba11": (
        "https://bucket.s3.amazonaws.com/m.onnx?X-Amz-Credential=***&X-Amz-Signature=***"
    ),
    "s3://bucket/m.onnx": "s3://bucket/m.onnx",
}


@pytest.mark.parametrize("uri", SECRET_URIS)
def test_credentials_in_the_uri_are_never_shown(uri: str) -> None:
    assert redact(uri) == SECRET_URIS[uri]
    assert redact(f"retries exhausted: cannot reach {uri!r} (503)") == (
        f"retries exhausted: cannot reach {SECRET_URIS[uri]!r} (503)"
    )


def test_metadata_and_logs_show_the_uri_without_its_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = f"{MODEL.as_uri()}?X-Amz-Signature=s3cr3t"
    app = create_app(source=ModelSource(secret, hashlib.sha256(MODEL_BYTES).hexdigest()))
    with caplog.at_level(logging.INFO), TestClient(app) as own:
        meta = own.get("/metadata").json()
    assert meta["model_uri"] == f"{MODEL.as_uri()}?X-Amz-Signature=***"
    assert "s3cr3t" not in caplog.text


def test_the_loaders_messages_carry_no_secret(tmp_path: Path) -> None:
    secret = "https://alice:hunter2@127.0.0.1:9/m.onnx?sig=s3cr3t"
    loaded = run_loader(tmp_path / MODEL_FILE_NAME, secret, attempts=1)
    assert loaded.status != 0
    assert "hunter2" not in loaded.stdout + loaded.stderr
    assert "s3cr3t" not in loaded.stdout + loaded.stderr
    assert "***@127.0.0.1" in loaded.stderr


def test_the_server_refuses_a_model_with_another_sha256() -> None:
    app = create_app(source=ModelSource(MODEL.as_uri(), "0" * 64))
    with pytest.raises(ModelLoadError, match="checksum mismatch"), TestClient(app):
        pass
    assert app.state.ready is False


def test_the_server_refuses_a_missing_model(tmp_path: Path) -> None:
    settings = dataclasses.replace(Settings.from_env(), model_filepath=tmp_path / "none.onnx")
    app = create_app(settings, ModelSource((tmp_path / "none.onnx").as_uri(), SHA256))
    with pytest.raises(ModelLoadError, match="model not found"), TestClient(app):
        pass
    assert app.state.ready is False


def test_a_malformed_model_sha256_is_refused() -> None:
    with pytest.raises(SettingsError, match="MODEL_SHA256"):
        ModelSource.from_env(MODEL, {"MODEL_SHA256": "abc"})
