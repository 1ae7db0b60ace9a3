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
from src.ml.classifier import jsonable

MODEL = f"/v2/models/{config.SERVICE_NAME}"
VERSIONED = f"{MODEL}/versions/{config.SERVICE_VERSION}"
Tensor = dict[str, Any]


def _inputs(client: TestClient) -> list[Tensor]:
    metas: list[Tensor] = client.get(MODEL).json()["inputs"]
    return metas


def _rows(client: TestClient, count: int) -> list[Any]:
    """``count`` rows the model takes: made up for one numeric input, else the sample's."""
    metas = _inputs(client)
    if len(metas) > 1 or metas[0]["datatype"] in ("BYTES", "BOOL"):
        # Strings and records are not made up: an unknown category may be refused by the model.
        sample: list[Any] = getattr(config, "DATA_SAMPLE")  # noqa: B009 - not every pattern has it
        return [sample[index % len(sample)] for index in range(count)]
    meta = metas[0]
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


def _tensors(client: TestClient, rows: list[Any]) -> list[Tensor]:
    """One V2 input tensor per model input, holding ``rows`` flat in row-major order."""
    tensors = []
    for meta in _inputs(client):
        values = [row[meta["name"]] for row in rows] if isinstance(rows[0], dict) else rows
        flat = np.array(values, dtype=object).reshape(-1).tolist()
        tensors.append({**meta, "shape": [len(rows), *meta["shape"][1:]], "data": flat})
    return tensors


def _expected(client: TestClient, rows: list[Any]) -> dict[str, np.ndarray]:
    """Every output of the loaded model for ``rows``, by name, as the protocol gives it."""
    model = client.app.state.classifier
    names = [output["name"] for output in client.get(MODEL).json()["outputs"]]
    results = model.run(model.feeds(rows), names)
    expected = {}
    for name, result in zip(names, results, strict=True):
        value = jsonable(result)
        expected[name] = np.array(value, dtype=object) if isinstance(value, list) else value
    return expected


def _same(output: Tensor, expected: np.ndarray) -> None:
    assert output["shape"] == list(expected.shape)
    if expected.dtype == np.object_:
        assert output["datatype"] == "BYTES"
        assert output["data"] == expected.reshape(-1).tolist()
    else:
        assert output["datatype"] == DATATYPES[expected.dtype.name]
        # JSON carries a float32 in its shortest form: equal to float32 precision.
        assert output["data"] == pytest.approx(expected.reshape(-1).tolist(), rel=1e-6, abs=1e-6)


def test_health(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True}


def test_server_metadata(client: TestClient) -> None:
    assert client.get("/v2").json() == {
        "name": config.SERVICE_NAME,
        "version": config.SERVICE_VERSION,
        "extensions": ["binary_tensor_data"],
    }


@pytest.mark.parametrize("path", [MODEL, VERSIONED])
def test_model_metadata_describes_the_loaded_model(client: TestClient, path: str) -> None:
    meta = client.get(path).json()
    model = client.app.state.classifier.metadata()
    assert meta["name"] == config.SERVICE_NAME
    assert meta["versions"] == [config.SERVICE_VERSION]
    assert meta["platform"] == "onnxruntime_onnx"
    assert [tensor["name"] for tensor in meta["inputs"]] == [i["name"] for i in model["inputs"]]
    for tensor, model_input in zip(meta["inputs"], model["inputs"], strict=True):
        assert tensor["datatype"] == DATATYPES[model_input["dtype"]]
        assert tensor["shape"] == [-1 if dim is None else dim for dim in model_input["shape"]]
    assert config.OUTPUT_NAME in [tensor["name"] for tensor in meta["outputs"]]


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
def test_infer_gives_every_output_of_the_model(client: TestClient, path: str) -> None:
    rows = _rows(client, 3)
    body = {"id": "request-7", "inputs": _tensors(client, rows)}
    response = client.post(f"{path}/infer", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model_name"] == config.SERVICE_NAME
    assert answer["model_version"] == config.SERVICE_VERSION
    assert answer["id"] == "request-7"
    expected = _expected(client, rows)
    assert [output["name"] for output in answer["outputs"]] == list(expected)
    for output in answer["outputs"]:
        _same(output, expected[output["name"]])


def test_nested_data_and_a_requested_output(client: TestClient) -> None:
    rows = _rows(client, 2)
    tensors = _tensors(client, rows)
    nested = [
        {**tensor, "data": np.array(tensor["data"], dtype=object).reshape(tensor["shape"]).tolist()}
        for tensor in tensors
    ]
    body = {
        "inputs": nested,
        "outputs": [{"name": config.OUTPUT_NAME, "parameters": {"binary_data": False}}],
    }
    response = client.post(f"{MODEL}/infer", json=body)
    assert response.status_code == 200, response.text
    assert "id" not in response.json()
    (output,) = response.json()["outputs"]
    _same(output, _expected(client, rows)[config.OUTPUT_NAME])


def _binary(tensor: Tensor) -> bytes:
    values = np.array(tensor["data"], dtype=object)
    if tensor["datatype"] == "BYTES":
        encoded = [str(value).encode() for value in values]
        return b"".join(len(item).to_bytes(4, "little") + item for item in encoded)
    dtype = np.dtype(next(name for name, v2 in DATATYPES.items() if v2 == tensor["datatype"]))
    return values.astype(dtype.newbyteorder("<")).tobytes()


def test_binary_tensor_data_both_ways(client: TestClient) -> None:
    rows = _rows(client, 2)
    tensors = _tensors(client, rows)
    raw = [_binary(tensor) for tensor in tensors]
    header = [
        {key: tensor[key] for key in ("name", "datatype", "shape")}
        | {"parameters": {"binary_data_size": len(data)}}
        for tensor, data in zip(tensors, raw, strict=True)
    ]
    text = json.dumps({"inputs": header, "parameters": {"binary_data_output": True}}).encode()
    response = client.post(
        f"{MODEL}/infer",
        content=text + b"".join(raw),
        headers={"Inference-Header-Content-Length": str(len(text))},
    )
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    answer = json.loads(response.content[:length])
    body = response.content[length:]
    expected = _expected(client, rows)
    for output in answer["outputs"]:
        size = output["parameters"]["binary_data_size"]
        data, body = body[:size], body[size:]
        want = expected[output["name"]]
        if want.dtype == np.object_:
            continue  # strings: their framing is the request's, checked above
        got = np.frombuffer(data, dtype=want.dtype.newbyteorder("<")).reshape(want.shape)
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert body == b""


def _changed(tensors: list[Tensor], **changes: Any) -> Any:
    return {"inputs": [{**tensors[0], **changes}, *tensors[1:]]}


def _first(tensors: list[Tensor], value: Any) -> Any:
    return _changed(tensors, data=[value, *tensors[0]["data"][1:]])


def _too_big(tensors: list[Tensor]) -> Any:
    # Beyond the datatype's range, yet a finite JSON number (a number is no string or boolean).
    return _first(tensors, 1e39 if tensors[0]["datatype"] in ("FP16", "FP32") else 10**400)


def _halves(tensor: Tensor) -> list[list[Any]]:
    middle = len(tensor["data"]) // 2
    return [tensor["data"][:middle], tensor["data"][middle:]]


def _not_of_type(tensors: list[Tensor]) -> Any:
    return _first(tensors, 1 if tensors[0]["datatype"] == "BYTES" else "1")


def _other_type(tensors: list[Tensor]) -> Any:
    return _first(tensors, 1 if tensors[0]["datatype"] == "BOOL" else True)


# Each builds a refused request from good two-row tensors, changing the first.
BAD: dict[str, Callable[[list[Tensor]], Any]] = {
    "wrong datatype": lambda t: _changed(
        t, datatype="INT8" if t[0]["datatype"] != "INT8" else "FP32"
    ),
    "unknown datatype": lambda t: _changed(t, datatype="FLOAT"),
    "wrong width": lambda t: _changed(t, shape=[2, t[0]["shape"][1] + 1]),
    "wrong rank": lambda t: _changed(t, shape=[len(t[0]["data"])]),
    "no rows": lambda t: _changed(t, shape=[0, t[0]["shape"][1]], data=[]),
    "negative dimension": lambda t: _changed(t, shape=[-2, t[0]["shape"][1]]),
    "too few values": lambda t: _changed(t, data=t[0]["data"][1:]),
    "ragged nesting": lambda t: _changed(t, data=[_halves(t[0])[0], _halves(t[0])[1][1:]]),
    "nesting unlike the shape": lambda t: _changed(t, data=[[v, v] for v in t[0]["data"]]),
    "value of another type": _not_of_type,
    "boolean or number": _other_type,
    "null": lambda t: _first(t, None),
    "list for a value": lambda t: _first(t, [1]),
    "beyond the datatype": _too_big,
    "integer beyond float64": lambda t: _first(t, 10**400),
    "unknown input": lambda t: _changed(t, name="not-the-input"),
    "an input twice": lambda t: {"inputs": [t[0], *t]},
    "no inputs": lambda t: {"inputs": []},
    "missing inputs": lambda t: {"id": "x"},
    "unknown field": lambda t: {"inputs": t, "extra": 1},
    "unknown output": lambda t: {"inputs": t, "outputs": [{"name": "not-an-output"}]},
    "binary data size without binary data": lambda t: _changed(
        t, parameters={"binary_data_size": 32}
    ),
    "not an object": lambda t: [{"inputs": t}],
}


@pytest.mark.parametrize("case", BAD)
def test_bad_requests_are_400_with_an_error(client: TestClient, case: str) -> None:
    body = BAD[case](_tensors(client, _rows(client, 2)))
    response = client.post(f"{MODEL}/infer", content=json.dumps(body))
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"}
    assert response.json()["error"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_400(client: TestClient, literal: str) -> None:
    tensors = _tensors(client, _rows(client, 1))
    body = json.dumps(_first(tensors, "FIRST"))
    response = client.post(f"{MODEL}/infer", content=body.replace('"FIRST"', literal))
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("body", [b"", b"{", b"\xff", b'{"inputs": ' + b"[" * 5000])
def test_undecodable_bodies_are_400(client: TestClient, body: bytes) -> None:
    response = client.post(f"{MODEL}/infer", content=body)
    assert response.status_code == 400
    assert response.json()["error"]


@pytest.mark.parametrize("header", ["14", "x", "99999"])
def test_binary_data_that_does_not_fit_is_400(client: TestClient, header: str) -> None:
    response = client.post(
        f"{MODEL}/infer",
        content=b'{"inputs": []}\x00\x00\x80?',
        headers={"Inference-Header-Content-Length": header},
    )
    assert response.status_code == 400
    assert response.json()["error"]


def test_too_many_rows_is_413(client: TestClient) -> None:
    limit = client.app.state.settings.max_rows
    tensors = _tensors(client, _rows(client, 1))
    # Refused for its shape alone, before its (short) data is looked at.
    body = _changed(tensors, shape=[limit + 1, *tensors[0]["shape"][1:]])
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
