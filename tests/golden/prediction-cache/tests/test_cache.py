"""The answer cache against a real Redis: hits, misses, keys, what is never cached, Redis down."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient
from redis import Redis

from src.app.config import DATA_SAMPLE, MODEL_SHA256, SERVICE_NAME, Settings
from src.cache.answers import canonical_rows
from tests.conftest import serve

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.6, 3.0, 5.6, 2.0]]
# A miss is written in the background, just after the answer: the next request may precede it.
WRITE_SECONDS = 5.0


def post(client: TestClient, rows: Any, path: str = "/predict") -> Any:
    """POST ``{"data": rows}``; the client's response."""
    return client.post(path, json={"data": rows})


def until_hit(client: TestClient, rows: Any, path: str = "/predict") -> Any:
    """Ask again until the cache answers (a failure after WRITE_SECONDS)."""
    deadline = time.monotonic() + WRITE_SECONDS
    while time.monotonic() < deadline:
        response = post(client, rows, path)
        if response.headers["cache"] == "hit":
            return response
        time.sleep(0.02)
    pytest.fail(f"{rows} on {path} was never answered from the cache")


def answer_keys(redis: Redis) -> list[bytes]:
    """The keys of cached answers."""
    return sorted(redis.scan_iter(f"{SERVICE_NAME}:answer:*"))


def test_a_miss_then_a_hit_with_the_same_bytes(client: TestClient, redis_db: Redis) -> None:
    first = post(client, ROWS)
    assert (first.status_code, first.headers["cache"]) == (200, "miss")
    hit = until_hit(client, ROWS)
    assert hit.content == first.content
    assert hit.headers["content-type"] == "application/json"
    [key] = answer_keys(redis_db)
    assert key.startswith(f"{SERVICE_NAME}:answer:{MODEL_SHA256[:16]}:".encode())
    assert redis_db.get(key) == first.content


def test_entries_expire_after_the_ttl(redis_server: RedisServer, redis_db: Redis) -> None:
    with serve(redis_server.url, CACHE_TTL_SECONDS="120") as client:
        post(client, ROWS)
        until_hit(client, ROWS)
    [key] = answer_keys(redis_db)
    assert 110 <= redis_db.ttl(key) <= 120


def test_spacing_and_key_order_do_not_matter_but_values_do(
    client: TestClient, redis_db: Redis
) -> None:
    post(client, ROWS)
    until_hit(client, ROWS)
    spaced = client.post(
        "/predict",
        content=b'{ "data" : [ [5.1, 3.5, 1.4, 0.2] ,[6.6,3.0,5.6,2.0]] }',
        headers={"content-type": "application/json"},
    )
    assert spaced.headers["cache"] == "hit"
    other = post(client, [[5.1, 3.5, 1.4, 0.3], [6.6, 3.0, 5.6, 2.0]])
    assert other.headers["cache"] == "miss"


def test_canonical_rows_sort_object_keys() -> None:
    assert canonical_rows(b'{"data": [{"b": 1, "a": 2}]}', 10) == b'[{"a":2,"b":1}]'
    assert canonical_rows(b'{"data": [{"a": 2, "b": 1}]}', 10) == b'[{"a":2,"b":1}]'


def test_scores_and_labels_are_cached_apart(client: TestClient, redis_db: Redis) -> None:
    scores = post(client, ROWS)
    labels = post(client, ROWS, "/predict/label")
    assert labels.headers["cache"] == "miss"
    assert until_hit(client, ROWS, "/predict/label").json() == labels.json()
    assert until_hit(client, ROWS).json() == scores.json()
    assert len(answer_keys(redis_db)) == 2


def test_a_new_model_never_serves_an_old_answer(
    redis_server: RedisServer, redis_db: Redis, tmp_path: Path
) -> None:
    with serve(redis_server.url) as client:
        first = post(client, ROWS)
        until_hit(client, ROWS)
    # The same model under another sha256: a protobuf field unknown to ONNX (number 99, varint 1)
    # appended to the file changes nothing ONNX Runtime reads, but it is another file.
    other = tmp_path / "other.onnx"
    other.write_bytes(Settings.from_env().model_filepath.read_bytes() + b"\x98\x06\x01")
    with serve(redis_server.url, MODEL_FILEPATH=str(other)) as client:
        again = post(client, ROWS)
        assert again.headers["cache"] == "miss"
        assert again.json() == first.json()
        until_hit(client, ROWS)
    prefixes = {key.rsplit(b":", 1)[0] for key in answer_keys(redis_db)}
    assert len(prefixes) == 2


@pytest.mark.parametrize(
    "body",
    [
        {"data": [[1.0, 2.0]]},
        {"data": [["a", 1.0, 2.0, 3.0]]},
        {"data": ROWS, "extra": 1},
        {"data": []},
    ],
    ids=["short row", "string", "extra field", "no rows"],
)
def test_refusals_are_never_cached(client: TestClient, redis_db: Redis, body: Any) -> None:
    for _ in range(3):
        response = client.post("/predict", json=body)
        assert response.status_code == 422
        assert response.headers["cache"] in ("miss", "bypass")
    time.sleep(0.2)
    assert answer_keys(redis_db) == []


def test_the_sample_and_other_routes_are_not_cached(client: TestClient, redis_db: Redis) -> None:
    assert "cache" not in client.get("/predict/test").headers
    assert "cache" not in client.post("/v2/models/x/infer", json={}).headers
    time.sleep(0.2)
    assert answer_keys(redis_db) == []


def test_a_foreign_entry_is_served_only_under_its_own_key(
    client: TestClient, redis_db: Redis
) -> None:
    # Only this service writes under its prefix; anything else in Redis is never read.
    redis_db.set(f"{SERVICE_NAME}:answer:foreign", b'{"prediction": "not ours"}')
    response = post(client, DATA_SAMPLE)
    assert response.headers["cache"] == "miss"
    assert response.json()["prediction"] != "not ours"


def test_without_redis_answers_are_uncached_not_errors(redis_server: RedisServer) -> None:
    url = f"redis://127.0.0.1:{redis_server.port + 1 if redis_server.port < 65535 else 1}/0"
    with serve(url, REDIS_TIMEOUT_MS="100") as client:
        assert client.get("/ready").json() == {"ready": True, "cache": "degraded"}
        answers = [post(client, ROWS) for _ in range(5)]
        assert {response.status_code for response in answers} == {200}
        assert {response.headers["cache"] for response in answers} == {"bypass"}
        assert len({response.content for response in answers}) == 1
        assert client.get("/metadata").json()["cache"]["health"] == "degraded"


def test_redis_going_away_and_coming_back(redis_server: RedisServer, redis_db: Redis) -> None:
    with serve(redis_server.url) as client:
        first = post(client, ROWS)
        until_hit(client, ROWS)
        redis_server.stop()
        try:
            down = post(client, ROWS)
            assert (down.status_code, down.headers["cache"]) == (200, "bypass")
            assert down.content == first.content
        finally:
            redis_server.start()
        # The breaker lets a trial through after its pause; then the old entry is served again.
        deadline = time.monotonic() + 10
        while post(client, ROWS).headers["cache"] != "hit":
            assert time.monotonic() < deadline, "the cache did not come back"
            time.sleep(0.2)


def test_metrics_count_hits_and_misses(client: TestClient, redis_db: Redis) -> None:
    def counts() -> dict[str, float]:
        found = {"hit": 0.0, "miss": 0.0}
        for line in client.get("/metrics").text.splitlines():
            for result in found:
                if line.startswith(f'prediction_cache_lookups_total{{result="{result}"}}'):
                    found[result] = float(line.split()[-1])
        return found

    before = counts()
    post(client, [[4.4, 2.9, 1.4, 0.2]])
    until_hit(client, [[4.4, 2.9, 1.4, 0.2]])
    after = counts()
    assert after["miss"] - before["miss"] >= 1
    assert after["hit"] - before["hit"] == 1


def test_metadata_names_the_cache(client: TestClient) -> None:
    cache = client.get("/metadata").json()["cache"]
    assert cache["key_prefix"] == f"{SERVICE_NAME}:answer:{MODEL_SHA256[:16]}:"
    assert cache["health"] == "ok"
    assert cache["ttl_seconds"] >= 1
