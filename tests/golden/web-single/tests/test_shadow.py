"""The shadow model (SHADOW_MODEL_FILEPATH): run on every prediction off the request's path.

``tests/data/shadow-model.onnx`` is the served model made to disagree on known rows: the class
scores of a row whose input value at flat index ``shadow_feature`` is above ``shadow_threshold``
(both in the file's metadata) are rotated by one class. In a project serving its own model the
file is a copy of that model (and where there is no such file, the served model is used): its own
shadow, which must agree on every row.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from src.app import config, deps
from src.app.config import Settings
from src.app.main import create_app
from src.ml import shadow as shadowing

PROJECT = Path(__file__).resolve().parents[1]
SHADOW_MODEL = PROJECT / "tests" / "data" / "shadow-model.onnx"
ROWS = 20


def sample() -> Any:
    """The rows the served model passes its start-up test with."""
    return config.DATA_SAMPLE


def shadow_path() -> Path:
    """The shadow test model; the served model itself where the project has none."""
    return SHADOW_MODEL if SHADOW_MODEL.is_file() else Settings.from_env().model_filepath


def shadow_file() -> tuple[int, float] | None:
    """Where the shadow model disagrees; None when it is a copy of the served model."""
    session = ort.InferenceSession(str(shadow_path()), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    if "shadow_feature" not in meta:
        return None
    return int(meta["shadow_feature"]), float(meta["shadow_threshold"])


def rows_across(feature: int, threshold: float) -> tuple[list[Any], int]:
    """ROWS copies of the sample's first row, input ``feature`` stepping across ``threshold``;
    and how many of them are above it."""
    first = np.asarray(sample()[0], dtype=np.float64)
    rows = []
    for index in range(ROWS):
        row = first.copy().reshape(-1)
        row[feature] = threshold * (0.05 + 0.1 * index)
        rows.append(row.reshape(first.shape).tolist())
    return rows, sum(0.05 + 0.1 * index > 1 for index in range(ROWS))


def predict(client: TestClient, rows: list[Any]) -> bytes:
    """The raw answer of the served model for ``rows``."""
    answer = client.post("/predict", json={"data": rows})
    assert answer.status_code == 200, answer.text
    return answer.content


@pytest.fixture
def shadowed(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, list[Any], int]]:
    """The service with its shadow model; rows to send, and how many the shadow disagrees on."""
    found = shadow_file()
    rows, expected = (list(sample()), 0) if found is None else rows_across(*found)
    monkeypatch.setenv("SHADOW_MODEL_FILEPATH", str(shadow_path()))
    monkeypatch.setenv("SHADOW_LOG_EVERY", "1")
    with TestClient(create_app()) as client:
        yield client, rows, expected


def dropped() -> float:
    return REGISTRY.get_sample_value("shadow_predictions_dropped_total") or 0.0


def compared(rows: int) -> shadowing.Shadow:
    """The worker's shadow, once it compared ``rows`` rows (a few seconds at most)."""
    shadow = deps.SHADOWS[0]
    deadline = time.monotonic() + 10
    while shadow.compared < rows and time.monotonic() < deadline:
        time.sleep(0.01)
    return shadow


def test_the_shadow_disagrees_on_exactly_the_known_rows(
    shadowed: tuple[TestClient, list[Any], int], caplog: pytest.LogCaptureFixture
) -> None:
    client, rows, expected = shadowed
    with caplog.at_level(logging.INFO, logger="src.ml.shadow"):
        for row in rows:
            predict(client, [row])
        shadow = compared(len(rows))
    assert (shadow.compared, shadow.disagreed) == (len(rows), expected)
    metrics = client.get("/metrics").text
    assert "shadow_rows_disagreed_total" in metrics
    assert "shadow_inference_duration_seconds_count" in metrics
    logged = [r.getMessage() for r in caplog.records if "shadow comparison" in r.getMessage()]
    # SHADOW_LOG_EVERY=1: every batch logged, with both answers of each of its rows.
    entries = [json.loads(line.split(" ", 2)[2]) for line in logged]
    assert sum(entry["rows"] for entry in entries) == len(rows)
    assert sum(entry["disagreed"] for entry in entries) == expected
    assert all(len(entry["primary"]) == len(entry["shadow"]) == entry["rows"] for entry in entries)


def test_the_answers_are_the_same_bytes_with_and_without_a_shadow(
    shadowed: tuple[TestClient, list[Any], int],
) -> None:
    client, rows, _ = shadowed
    with_shadow = predict(client, rows)
    compared(len(rows))
    with TestClient(create_app(Settings.from_env({}))) as plain:
        assert predict(plain, rows) == with_shadow


def test_a_full_queue_drops_the_prediction_and_counts_it(
    shadowed: tuple[TestClient, list[Any], int],
) -> None:
    _, rows, _ = shadowed
    running = deps.SHADOWS[0]
    shadow = shadowing.Shadow(running.primary, running.files, 1, 1e-4, 1)
    before = dropped()
    predict_scores = shadow.primary.predict
    shadow.offer(predict_scores, rows, None)
    shadow.offer(predict_scores, rows, None)
    assert (shadow.queue.qsize(), shadow.dropped) == (1, 1)
    shadow.publish_drops()
    shadow.publish_drops()
    assert dropped() == before + 1


def test_the_shadow_process_ends_with_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHADOW_MODEL_FILEPATH", str(shadow_path()))
    with TestClient(create_app()):
        process = deps.SHADOWS[0].process
        assert process is not None and process.returncode is None
    assert process.returncode == 0
    assert not deps.SHADOWS


def test_a_shadow_process_that_dies_leaves_the_answers_alone(
    shadowed: tuple[TestClient, list[Any], int], caplog: pytest.LogCaptureFixture
) -> None:
    client, rows, _ = shadowed
    expected = predict(client, rows)
    process = deps.SHADOWS[0].process
    assert process is not None
    with caplog.at_level(logging.ERROR, logger="src.ml.shadow"):
        process.kill()
        deadline = time.monotonic() + 10
        while "shadow process ended" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "shadow process ended" in caplog.text
        for _ in range(3):
            assert predict(client, rows) == expected


def test_a_shadow_model_that_cannot_load_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    monkeypatch.setenv("SHADOW_MODEL_FILEPATH", str(broken))
    with pytest.raises(Exception, match=r"broken\.onnx"), TestClient(create_app()):
        pass
    assert not deps.SHADOWS
