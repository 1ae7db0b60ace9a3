"""The service's contract, checked against the model and data store it ships, with a real Redis."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest
from fastapi.testclient import TestClient
from redis import Redis

from src.app.config import IMAGE_SIDE, MODEL_FILE_NAME, SAMPLE_DATA_ID, Settings
from src.app.main import create_app
from src.data.cache import decode_tensor
from src.ml.preprocess import preprocess, tensor_shape
from tests.conftest import png_with_a_bad_chunk, settings_for
from tests.redis_server import RedisServer

SETTINGS = Settings.from_env()
STORE = Path(SETTINGS.data_uri)
OTHER_ID = sorted(path.name for path in STORE.iterdir())[-1]
# prediction_sample in the variables: the scores the training framework gave the sample item.
EXPECTED = [[0.004096, 1.2e-05, 1e-06, 1e-05, 0.002662, 0.002011, 0.990931, 1e-06, 0.000271, 6e-06]]


def predict(client: TestClient, data_id: Any, path: str = "/predict") -> Any:
    """POST ``{"data": data_id}``; the response."""
    return client.post(path, json={"data": data_id})


def cache_key(client: TestClient, data_id: str) -> str:
    """The Redis key the service uses for ``data_id``."""
    return str(client.get("/metadata").json()["cache"]["key_prefix"]) + data_id


def wait_for_cache(client: TestClient, seconds: float = 10) -> str:
    """Poll /ready until the cache is ``ok`` again (the breaker retries after a pause)."""
    deadline = time.monotonic() + seconds
    health = client.get("/ready").json()["cache"]
    while health != "ok" and time.monotonic() < deadline:
        time.sleep(0.1)
        health = client.get("/ready").json()["cache"]
    return str(health)


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    assert client.get("/ready").json() == {"ready": True, "cache": "ok"}


def test_metadata_names_the_model_the_preprocessing_and_the_cache(client: TestClient) -> None:
    meta = client.get("/metadata").json()
    assert meta["model_sha256"] == hashlib.sha256(SETTINGS.model_filepath.read_bytes()).hexdigest()
    assert meta["model_file"] == SETTINGS.model_filepath.name
    assert len(meta["labels"]) == len(client.get("/label").json())
    assert meta["inputs"][0]["shape"][1:] == meta["preprocessing"]["tensor_shape"]
    assert meta["cache"]["ttl_seconds"] == SETTINGS.cache_ttl_seconds
    assert meta["sample_data_id"] == SAMPLE_DATA_ID


def test_a_miss_then_a_hit(
    client: TestClient, redis_db: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="src"):
        first = predict(client, SAMPLE_DATA_ID)
        second = predict(client, SAMPLE_DATA_ID)
    assert first.status_code == second.status_code == 200
    assert (first.json()["cache"], second.json()["cache"]) == ("miss", "hit")
    assert first.json()["prediction"] == second.json()["prediction"]
    assert first.json()["data_id"] == SAMPLE_DATA_ID
    messages = [record.getMessage() for record in caplog.records]
    assert messages.index(f"registering cache: {SAMPLE_DATA_ID}") < messages.index(
        f"cache hit: {SAMPLE_DATA_ID}"
    )
    assert 0 < redis_db.ttl(cache_key(client, SAMPLE_DATA_ID)) <= SETTINGS.cache_ttl_seconds


def test_the_cached_tensor_is_a_fresh_preprocessing(client: TestClient, redis_db: Redis) -> None:
    assert predict(client, OTHER_ID).json()["cache"] == "miss"
    raw = redis_db.get(cache_key(client, OTHER_ID))
    assert isinstance(raw, bytes)
    cached = decode_tensor(raw, tensor_shape(IMAGE_SIDE))
    assert cached is not None
    fresh = preprocess((STORE / OTHER_ID).read_bytes(), IMAGE_SIDE)
    assert cached.dtype == fresh.dtype
    assert np.array_equal(cached, fresh)


def test_labels_agree_with_scores_hit_or_miss(client: TestClient, redis_db: Redis) -> None:
    names = list(client.get("/label").json().values())
    for data_id in (SAMPLE_DATA_ID, OTHER_ID):
        scores = predict(client, data_id).json()
        label = predict(client, data_id, "/predict/label").json()
        assert (scores["cache"], label["cache"]) == ("miss", "hit")
        row = scores["prediction"][0]
        assert label["prediction"] == [names[row.index(max(row))]]


def test_sample_endpoints_predict_the_sample_item(client: TestClient) -> None:
    scores = client.get("/predict/test").json()
    assert scores["data_id"] == SAMPLE_DATA_ID
    assert scores["prediction"] == predict(client, SAMPLE_DATA_ID).json()["prediction"]
    label = client.get("/predict/test/label").json()
    labels = predict(client, SAMPLE_DATA_ID, "/predict/label").json()
    assert label["prediction"] == labels["prediction"]
    (row,) = scores["prediction"]
    assert sum(row) == pytest.approx(1.0, abs=1e-4)


def test_sample_scores_match_the_training_framework(client: TestClient) -> None:
    scores = client.get("/predict/test").json()["prediction"]
    assert len(scores) == len(EXPECTED)
    for row, want in zip(scores, EXPECTED, strict=True):
        assert row == pytest.approx(want, abs=1e-4)


BAD_IDS: dict[str, Any] = {
    "parent folder": f"../models/{MODEL_FILE_NAME}",
    "dot dot": "..",
    "dot dot inside": "a..b.png",
    "absolute path": "/etc/passwd",
    "path separator": f"sub/{SAMPLE_DATA_ID}",
    "backslash": f"sub\\{SAMPLE_DATA_ID}",
    "URL scheme": "s3://bucket/x.png",
    "file URL": "file:///etc/passwd",
    "drive": "C:x.png",
    "hidden file": ".env",
    "empty": "",
    "too long": "x" * 201,
    "space": "a b.png",
    "number": 5,
    "null": None,
    "list": [SAMPLE_DATA_ID],
}


@pytest.mark.parametrize("data_id", BAD_IDS.values(), ids=BAD_IDS.keys())
@pytest.mark.parametrize("path", ["/predict", "/predict/label"])
def test_malformed_ids_are_422_naming_the_field(
    client: TestClient, path: str, data_id: Any
) -> None:
    response = predict(client, data_id, path)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "data"]


@pytest.mark.parametrize(
    "body", [{"id": SAMPLE_DATA_ID}, {"data": SAMPLE_DATA_ID, "extra": 1}, [SAMPLE_DATA_ID]]
)
def test_malformed_bodies_are_422(client: TestClient, body: Any) -> None:
    assert client.post("/predict", json=body).status_code == 422


def test_an_unknown_id_is_404(client: TestClient) -> None:
    response = predict(client, "no-such-item.png")
    assert response.status_code == 404
    assert "no-such-item.png" in response.json()["detail"]


def test_too_large_a_body_is_413(client: TestClient) -> None:
    body = b'{"data": "' + b"x" * SETTINGS.max_body_bytes + b'"}'
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413


# Pillow raises SyntaxError on this one, which is no OSError.
BAD_CHUNK_PNG = png_with_a_bad_chunk()


@pytest.fixture
def odd_store(redis_server: RedisServer) -> Iterator[TestClient]:
    """The service on an in-memory store (any fsspec URI works) holding items that are no images."""
    memory = fsspec.filesystem("memory")
    memory.pipe("/odd-store/notes.png", b"not an image")
    memory.pipe("/odd-store/huge.png", b"\0" * 2048)
    memory.pipe("/odd-store/bad-chunk.png", BAD_CHUNK_PNG)
    settings = settings_for(redis_server.url, DATA_URI="memory://odd-store", MAX_ITEM_BYTES="1024")
    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as odd:
            yield odd
    finally:
        memory.rm("/odd-store", recursive=True)


@pytest.mark.parametrize("data_id", ["notes.png", "huge.png", "bad-chunk.png"])
def test_an_item_that_cannot_be_preprocessed_is_422(odd_store: TestClient, data_id: str) -> None:
    response = predict(odd_store, data_id)
    assert response.status_code == 422, response.text
    assert data_id in response.json()["detail"][0]["msg"]


def test_redis_stopping_mid_test_never_fails_a_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path)
    server.start()
    try:
        with TestClient(create_app(settings_for(server.url)), raise_server_exceptions=False) as own:
            assert predict(own, SAMPLE_DATA_ID).json()["cache"] == "miss"
            assert predict(own, SAMPLE_DATA_ID).json()["cache"] == "hit"
            server.stop()
            with caplog.at_level(logging.WARNING, logger="src"):
                answers = [predict(own, data_id) for data_id in (SAMPLE_DATA_ID, OTHER_ID) * 3]
            assert [answer.status_code for answer in answers] == [200] * 6
            assert {answer.json()["cache"] for answer in answers} == {"bypass"}
            assert any("serving uncached" in record.getMessage() for record in caplog.records)
            assert own.get("/ready").json() == {"ready": True, "cache": "degraded"}
            assert own.get("/predict/test").status_code == 200
            server.start()
            assert wait_for_cache(own) == "ok"
            assert predict(own, OTHER_ID).json()["cache"] == "miss"
    finally:
        server.stop()


def test_openapi_documents_the_endpoints(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path in ("/health", "/ready", "/metadata", "/label", "/predict", "/predict/label"):
        assert path in schema["paths"]
    request = schema["components"]["schemas"]["PredictRequest"]
    assert request["properties"]["data"]["type"] == "string"
