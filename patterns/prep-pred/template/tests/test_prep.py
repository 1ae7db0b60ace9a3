"""The prep service against a real prediction service on 127.0.0.1, up, down, hung and busy."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from src.app.config import DATA_SAMPLE
from src.app.main import create_app as create_prediction_app
from src.ml.preprocess import preprocess
from src.prep.config import IMAGE_SIDE, PrepSettings
from src.prep.main import create_app
from tests.servers import free_port, serving, silent_listener

SAMPLES = sorted((Path(__file__).resolve().parents[1] / "samples").glob("*.png"))
PNG = {"content-type": "image/png"}


@pytest.fixture(scope="module")
def prediction_url() -> Iterator[str]:
    """The prediction service (the project's own, shipped model) under uvicorn on a free port."""
    with serving(create_prediction_app()) as url:
        yield url


@contextlib.contextmanager
def prep(pred_url: str, **overrides: str) -> Iterator[TestClient]:
    """The prep service, started through its lifespan, asking the service at ``pred_url``."""
    settings = PrepSettings.from_env({**os.environ, "PRED_URL": pred_url, **overrides})
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def client(prediction_url: str) -> Iterator[TestClient]:
    """A client of the prep service in front of the module's prediction service."""
    with prep(prediction_url) as test_client:
        yield test_client


def predicted(prediction_url: str, path: str, rows: Any) -> Any:
    """The prediction service's own answer for ``rows``, asked directly."""
    request = urllib.request.Request(
        prediction_url + path,
        data=json.dumps({"data": rows}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_the_samples_are_uploaded_and_predicted(client: TestClient, prediction_url: str) -> None:
    assert len(SAMPLES) >= 3
    for sample in SAMPLES:
        data = sample.read_bytes()
        row = preprocess(data, IMAGE_SIDE).tolist()
        scores = client.post("/predict", content=data, headers=PNG)
        assert scores.status_code == 200, scores.text
        [want] = predicted(prediction_url, "/predict", [row])["prediction"]
        [got] = scores.json()["prediction"]
        assert got == pytest.approx(want, abs=1e-6)
        label = client.post("/predict/label", content=data, headers=PNG)
        assert label.json() == predicted(prediction_url, "/predict/label", [row])


def test_the_first_sample_is_preprocessed_as_in_training() -> None:
    # DATA_SAMPLE is the first held-out image as the training script preprocessed it.
    row = preprocess(SAMPLES[0].read_bytes(), IMAGE_SIDE)
    assert np.allclose(row, np.asarray(DATA_SAMPLE[0], dtype=np.float32), atol=1e-6)


@pytest.mark.parametrize(
    ("body", "headers", "status", "words"),
    [
        (b"not an image", PNG, 422, "body: not an image"),
        (b"", PNG, 422, "body: empty"),
        (b"{}", {"content-type": "application/json"}, 415, "expected an image"),
    ],
    ids=["garbage", "empty", "json"],
)
def test_what_is_not_an_image_is_refused_naming_the_body(
    client: TestClient, body: bytes, headers: dict[str, str], status: int, words: str
) -> None:
    response = client.post("/predict", content=body, headers=headers)
    assert response.status_code == status
    assert words in response.json()["detail"]


def test_an_image_over_the_limit_is_413(prediction_url: str) -> None:
    with prep(prediction_url, MAX_IMAGE_BYTES="2048") as client:
        response = client.post("/predict", content=b"\x89PNG" + b"\0" * 4096, headers=PNG)
    assert response.status_code == 413
    assert "2048 bytes" in response.json()["detail"]


def retries_so_far(client: TestClient) -> float:
    """prediction_service_retries_total on the prep service's /metrics."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("prediction_service_retries_total "):
            return float(line.split()[-1])
    return 0.0


def test_a_prediction_service_that_is_down_is_503_after_the_retries() -> None:
    with prep(f"http://127.0.0.1:{free_port()}", PRED_RETRIES="2") as client:
        before = retries_so_far(client)
        response = client.post("/predict", content=SAMPLES[0].read_bytes(), headers=PNG)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert "unavailable after 3 attempts" in response.json()["detail"]
        assert "ConnectError" in response.json()["detail"]
        assert retries_so_far(client) - before == 2
        ready = client.get("/ready").json()
        assert (ready["ready"], ready["prediction_service"]) == (True, "unavailable")


def test_a_hung_prediction_service_is_504_at_the_timeout_and_not_retried() -> None:
    with silent_listener() as (url, accepted), prep(url, PRED_TIMEOUT_MS="300") as client:
        started = time.monotonic()
        response = client.post("/predict", content=SAMPLES[0].read_bytes(), headers=PNG)
        took = time.monotonic() - started
    assert response.status_code == 504
    assert "did not answer within 0.3 s" in response.json()["detail"]
    assert 0.3 <= took < 2.0
    assert len(accepted) == 1


def test_a_refusal_of_the_prediction_service_is_502_with_its_reason(prediction_url: str) -> None:
    with prep(prediction_url, PRED_MODEL="no-such-model") as client:
        response = client.post("/predict", content=SAMPLES[0].read_bytes(), headers=PNG)
    assert response.status_code == 502
    assert "refused the row (404" in response.json()["detail"]


class BusyThenForward(http.server.BaseHTTPRequestHandler):
    """Answers 503 to the first ``busy`` requests, then passes each on to ``target``."""

    busy = 0
    target = ""
    seen = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).seen += 1
        if type(self).seen <= self.busy:
            self._answer(503, b'{"error": "busy"}')
            return
        forwarded = urllib.request.Request(
            self.target + self.path, data=body, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(forwarded, timeout=10) as response:
            self._answer(response.status, response.read())

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        """Quiet: the test reads the counts, not the lines."""


def test_a_busy_prediction_service_is_retried_until_it_answers(prediction_url: str) -> None:
    handler = type("Handler", (BusyThenForward,), {"busy": 2, "target": prediction_url, "seen": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with prep(url, PRED_RETRIES="2") as client:
            response = client.post("/predict", content=SAMPLES[0].read_bytes(), headers=PNG)
        assert response.status_code == 200, response.text
        assert handler.seen == 3
    finally:
        server.shutdown()
        server.server_close()


def test_ready_says_the_prediction_service_is_ok(client: TestClient) -> None:
    assert client.get("/ready").json() == {
        "ready": True,
        "prediction_service": "ok",
        "detail": None,
    }
    assert "prediction_service_call_duration_seconds" in client.get("/metrics").text


def test_rows_the_model_overflows_on_are_422_naming_the_row() -> None:
    # Far outside the trained pixels' [0, 1]: the logistic regression overflows to NaN scores.
    with TestClient(create_prediction_app()) as prediction:
        response = prediction.post("/predict", json={"data": [DATA_SAMPLE[0], [3.0e38] * 256]})
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["body", "data"]
    assert problem["msg"].startswith("row 1: the model gives no finite scores")


def test_v2_inference_the_model_overflows_on_is_refused() -> None:
    # The V2 protocol answers every refusal 400, with the reason in "error".
    with TestClient(create_prediction_app()) as prediction:
        name = prediction.get("/metadata").json()["name"]
        tensor = {"name": "input", "shape": [1, 256], "datatype": "FP32", "data": [3.0e38] * 256}
        response = prediction.post(f"/v2/models/{name}/infer", json={"inputs": [tensor]})
    assert response.status_code == 400
    assert response.json()["error"].startswith("row 0: the model gives no finite outputs")
