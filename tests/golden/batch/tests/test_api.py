"""The service's contract, checked against the model it ships."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import pytest
from fastapi.testclient import TestClient

from src.app.config import DATA_SAMPLE, Settings

SETTINGS = Settings.from_env()
ROW = DATA_SAMPLE[0]


def _replace_first(row: Any, value: Any, key: str | None = None) -> Any:
    """``row`` with its first value (of input ``key``, in a record) replaced, at any depth."""
    if isinstance(row, dict):
        name = key or next(iter(row))
        return {**row, name: _replace_first(row[name], value)}
    if isinstance(row, list):
        return [_replace_first(row[0], value), *row[1:]]
    return value


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    assert client.get("/ready").json() == {"ready": True}


def test_metadata_names_the_model_that_is_served(client: TestClient) -> None:
    meta = client.get("/metadata").json()
    assert meta["model_sha256"] == hashlib.sha256(SETTINGS.model_filepath.read_bytes()).hexdigest()
    assert meta["model_file"] == SETTINGS.model_filepath.name
    assert meta["task"] == "classification"
    assert [tensor["name"] for tensor in meta["inputs"]] == ["input"]
    assert len(meta["labels"]) == len(client.get("/label").json())


def test_sample_scores_are_probabilities(client: TestClient) -> None:
    scores = client.get("/predict/test").json()["prediction"]
    assert len(scores) == len(DATA_SAMPLE)
    for row in scores:
        assert math.isclose(sum(row), 1.0, abs_tol=1e-4)
        # float32 sums: a probability of 1 may be a last bit above it.
        assert all(-1e-6 <= value <= 1.0 + 1e-6 for value in row)


def test_sample_scores_match_the_training_framework(client: TestClient) -> None:
    # prediction_sample in vars.yaml: the scores the training framework gave DATA_SAMPLE.
    expected = [[0.977483, 0.014371, 0.008146]]
    scores = client.get("/predict/test").json()["prediction"]
    assert len(scores) == len(expected)
    for row, want in zip(scores, expected, strict=True):
        assert row == pytest.approx(want, abs=1e-4)


def test_predict_agrees_with_the_sample_endpoints(client: TestClient) -> None:
    scores = client.post("/predict", json={"data": DATA_SAMPLE})
    labels = client.post("/predict/label", json={"data": DATA_SAMPLE})
    assert scores.status_code == labels.status_code == 200
    assert scores.json() == client.get("/predict/test").json()
    assert labels.json() == client.get("/predict/test/label").json()
    names = list(client.get("/label").json().values())
    for row, label in zip(scores.json()["prediction"], labels.json()["prediction"], strict=True):
        assert label == names[row.index(max(row))]


def test_an_unexpected_error_is_500_without_internals(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(rows: Any) -> Any:
        raise RuntimeError("internals a client must not see")

    state = client.app.state  # type: ignore[attr-defined]
    # Rows of their own for each way of serving: no answer of them is cached (prediction-cache).
    body = {"data": [ROW] * (11 if state.settings.fast_path else 12)}
    monkeypatch.setattr(state.classifier, "predict", broken)
    refused = client.post("/predict", json=body)
    assert refused.status_code == 500
    assert refused.json() == {"detail": "internal error"}
    monkeypatch.undo()
    assert client.post("/predict", json=body).status_code == 200


def test_one_answer_per_row(client: TestClient) -> None:
    rows = [ROW] * 7
    assert len(client.post("/predict", json={"data": rows}).json()["prediction"]) == 7
    assert len(client.post("/predict/label", json={"data": rows}).json()["prediction"]) == 7


BAD_BODIES: dict[str, Any] = {
    "wrong row length": {"data": [ROW + ROW]},
    "ragged rows": {"data": [ROW, ROW + ROW]},
    "row not a list": {"data": [1]},
    "string": {"data": [_replace_first(ROW, "1.0")]},
    "boolean": {"data": [_replace_first(ROW, True)]},
    "null": {"data": [_replace_first(ROW, None)]},
    "overflows float32": {"data": [_replace_first(ROW, 1e39)]},
    "empty input": {"data": []},
    "missing field": {"rows": DATA_SAMPLE},
    "unknown field": {"data": DATA_SAMPLE, "extra": 1},
    "not an object": [DATA_SAMPLE],
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
@pytest.mark.parametrize("path", ["/predict", "/predict/label"])
def test_bad_input_is_422_naming_the_field(client: TestClient, path: str, body: Any) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] == "body"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_422(client: TestClient, literal: str) -> None:
    row = json.dumps(_replace_first(ROW, 12345.0))
    response = client.post(
        "/predict",
        content='{"data": [' + row.replace("12345.0", literal, 1) + "]}",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422, response.text


def test_invalid_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/predict", content=b'{"data": [[', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


def test_too_many_rows_is_413(client: TestClient) -> None:
    response = client.post("/predict", json={"data": [ROW] * (SETTINGS.max_rows + 1)})
    assert response.status_code == 413
    assert str(SETTINGS.max_rows) in response.json()["detail"]


def test_as_many_rows_as_allowed_are_answered(client: TestClient) -> None:
    # The rows are counted before they are parsed (src.app.limits): the count must not be one off.
    response = client.post("/predict", json={"data": [ROW] * SETTINGS.max_rows})
    assert response.status_code == 200, response.text
    assert len(response.json()["prediction"]) == SETTINGS.max_rows


def test_too_large_a_body_is_413(client: TestClient) -> None:
    body = b'{"data": [' + b" " * SETTINGS.max_body_bytes + b"]}"
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_openapi_documents_the_endpoints(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/health", "/ready", "/metadata", "/label", "/predict", "/predict/label"):
        assert path in paths
