"""The Open Inference Protocol (KServe V2) endpoints, with hand-written JSON.

The input rows are made up from the model's own metadata, and the answers are compared with the
loaded model's scores for the same rows, so these tests hold for any model the service serves.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from src.app import config
from src.app.v2 import DATATYPES

MODEL = f"/v2/models/{config.SERVICE_NAME}"
VERSIONED = f"{MODEL}/versions/{config.SERVICE_VERSION}"
Tensor = dict[str, Any]


def _input(client: TestClient) -> Tensor:
    meta: Tensor = client.get(MODEL).json()["inputs"][0]
    return meta


def _rows(client: TestClient, count: int) -> list[Any]:
    """``count`` rows of the input's shape and datatype, of small numbers different per row."""
    meta = _input(client)
    width = math.prod(meta["shape"][1:])
    integral = "INT" in meta["datatype"]
    flat = np.array(
        [
            value if integral else value / 100
            for row in range(count)
            for value in ((row * 31 + column * 7) % 100 for column in range(width))
        ]
    )
    rows: list[Any] = flat.reshape(count, *meta["shape"][1:]).tolist()
    return rows


def _tensor(client: TestClient, rows: list[Any]) -> Tensor:
    meta = _input(client)
    flat = np.array(rows).ravel().tolist()
    return {**meta, "shape": [len(rows), *meta["shape"][1:]], "data": flat}


def _scores(client: TestClient, rows: list[Any]) -> np.ndarray:
    scores: np.ndarray = client.app.state.classifier.predict(rows)
    return scores


def test_health(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True}


def test_server_metadata(client: TestClient) -> None:
    assert client.get("/v2").json() == {
        "name": config.SERVICE_NAME,
        "version": config.SERVICE_VERSION,
        "extensions": [],
    }


@pytest.mark.parametrize("path", [MODEL, VERSIONED])
def test_model_metadata_describes_the_loaded_model(client: TestClient, path: str) -> None:
    meta = client.get(path).json()
    model_input = client.app.state.classifier.metadata()["inputs"][0]
    assert meta["name"] == config.SERVICE_NAME
    assert meta["versions"] == [config.SERVICE_VERSION]
    assert meta["platform"] == "onnxruntime_onnx"
    (tensor,) = meta["inputs"]
    assert tensor["name"] == model_input["name"]
    assert tensor["datatype"] == DATATYPES[model_input["dtype"]]
    assert tensor["shape"] == [-1 if dim is None else dim for dim in model_input["shape"]]
    assert meta["outputs"][0]["name"] == config.OUTPUT_NAME


def test_datatypes_are_the_protocols_names() -> None:
    assert DATATYPES["float32"] == "FP32"
    assert DATATYPES["float64"] == "FP64"
    assert DATATYPES["int64"] == "INT64"


@pytest.mark.parametrize("path", [MODEL, VERSIONED])
def test_model_is_ready(client: TestClient, path: str) -> None:
    response = client.get(f"{path}/ready")
    assert response.status_code == 200
    assert response.json() == {"name": config.SERVICE_NAME, "ready": True}


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/another",
        "/v2/models/another/ready",
        f"{MODEL}/versions/0.0.0-other",
        f"{MODEL}/versions/0.0.0-other/ready",
    ],
)
def test_unknown_model_or_version_is_404(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert "error" in response.json()


@pytest.mark.parametrize("path", [MODEL, VERSIONED])
def test_infer_gives_the_models_scores(client: TestClient, path: str) -> None:
    rows = _rows(client, 3)
    body = {"id": "request-7", "inputs": [_tensor(client, rows)]}
    response = client.post(f"{path}/infer", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model_name"] == config.SERVICE_NAME
    assert answer["model_version"] == config.SERVICE_VERSION
    assert answer["id"] == "request-7"
    (output,) = answer["outputs"]
    expected = _scores(client, rows)
    assert output["name"] == config.OUTPUT_NAME
    assert output["datatype"] == DATATYPES[expected.dtype.name]
    assert output["shape"] == list(expected.shape)
    assert output["data"] == pytest.approx(expected.ravel().tolist(), abs=1e-6)


def test_nested_data_and_a_requested_output(client: TestClient) -> None:
    rows = _rows(client, 2)
    body = {
        "inputs": [{**_tensor(client, rows), "data": rows}],
        "outputs": [{"name": config.OUTPUT_NAME, "parameters": {"binary_data": False}}],
    }
    response = client.post(f"{MODEL}/infer", json=body)
    assert response.status_code == 200, response.text
    assert "id" not in response.json()
    data = response.json()["outputs"][0]["data"]
    assert data == pytest.approx(_scores(client, rows).ravel().tolist(), abs=1e-6)


def _changed(tensor: Tensor, **changes: Any) -> Any:
    return {"inputs": [{**tensor, **changes}]}


def _first(tensor: Tensor, value: Any) -> Any:
    return _changed(tensor, data=[value, *tensor["data"][1:]])


def _too_big(tensor: Tensor) -> Any:
    # Beyond the datatype's range, yet a finite JSON number.
    return _first(tensor, 1e39 if tensor["datatype"] in ("FP16", "FP32") else 10**400)


def _halves(tensor: Tensor) -> list[list[Any]]:
    middle = len(tensor["data"]) // 2
    return [tensor["data"][:middle], tensor["data"][middle:]]


# Each builds a refused request from a good two-row tensor.
BAD: dict[str, Callable[[Tensor], Any]] = {
    "wrong datatype": lambda t: _changed(t, datatype="INT8" if t["datatype"] != "INT8" else "FP32"),
    "unknown datatype": lambda t: _changed(t, datatype="FLOAT"),
    "wrong width": lambda t: _changed(t, shape=[2, t["shape"][1] + 1]),
    "wrong rank": lambda t: _changed(t, shape=[len(t["data"])]),
    "no rows": lambda t: _changed(t, shape=[0, t["shape"][1]], data=[]),
    "negative dimension": lambda t: _changed(t, shape=[-2, t["shape"][1]]),
    "too few values": lambda t: _changed(t, data=t["data"][1:]),
    "ragged nesting": lambda t: _changed(t, data=[_halves(t)[0], _halves(t)[1][1:]]),
    "nesting unlike the shape": lambda t: _changed(t, data=[[value] for value in t["data"]]),
    "string": lambda t: _first(t, "1"),
    "boolean": lambda t: _first(t, True),
    "null": lambda t: _first(t, None),
    "list for a number": lambda t: _first(t, [1]),
    "beyond the datatype": _too_big,
    "integer beyond float64": lambda t: _first(t, 10**400),
    "unknown input": lambda t: _changed(t, name="not-the-input"),
    "two inputs": lambda t: {"inputs": [t, t]},
    "no inputs": lambda t: {"inputs": []},
    "missing inputs": lambda t: {"id": "x"},
    "unknown field": lambda t: {"inputs": [t], "extra": 1},
    "unknown output": lambda t: {"inputs": [t], "outputs": [{"name": "not-an-output"}]},
    "binary data parameter": lambda t: _changed(t, parameters={"binary_data_size": 32}),
    "not an object": lambda t: [{"inputs": [t]}],
}


@pytest.mark.parametrize("case", BAD)
def test_bad_requests_are_400_with_an_error(client: TestClient, case: str) -> None:
    body = BAD[case](_tensor(client, _rows(client, 2)))
    response = client.post(f"{MODEL}/infer", content=json.dumps(body))
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"}
    assert response.json()["error"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_400(client: TestClient, literal: str) -> None:
    tensor = _tensor(client, _rows(client, 1))
    body = json.dumps({"inputs": [{**tensor, "data": ["FIRST", *tensor["data"][1:]]}]})
    response = client.post(f"{MODEL}/infer", content=body.replace('"FIRST"', literal))
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("body", [b"", b"{", b"\xff\xfe", b'{"inputs": ' + b"[" * 5000])
def test_undecodable_bodies_are_400(client: TestClient, body: bytes) -> None:
    response = client.post(f"{MODEL}/infer", content=body)
    assert response.status_code == 400
    assert response.json()["error"]


def test_binary_tensor_data_is_refused_with_a_reason(client: TestClient) -> None:
    response = client.post(
        f"{MODEL}/infer",
        content=b'{"inputs": []}\x00\x00\x80?',
        headers={"Inference-Header-Content-Length": "14"},
    )
    assert response.status_code == 400
    assert "binary" in response.json()["error"]


def test_too_many_rows_is_413(client: TestClient) -> None:
    limit = client.app.state.settings.max_rows
    tensor = _tensor(client, _rows(client, 1))
    # Refused for its shape alone, before its (short) data is looked at.
    body = _changed(tensor, shape=[limit + 1, *tensor["shape"][1:]])
    response = client.post(f"{MODEL}/infer", json=body)
    assert response.status_code == 413
    assert str(limit) in response.json()["error"]


def test_too_large_a_body_is_413_with_an_error(client: TestClient) -> None:
    limit = client.app.state.settings.max_body_bytes
    body = b'{"inputs": [' + b" " * limit + b"]}"
    response = client.post(f"{MODEL}/infer", content=body)
    assert response.status_code == 413
    assert "error" in response.json()


def test_openapi_documents_the_protocol(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{model_name}",
        "/v2/models/{model_name}/ready",
        "/v2/models/{model_name}/infer",
        "/v2/models/{model_name}/versions/{model_version}/infer",
        "/metrics",
    ):
        assert path in paths
    body = paths["/v2/models/{model_name}/infer"]["post"]["requestBody"]["content"]
    assert "inputs" in body["application/json"]["schema"]["properties"]
