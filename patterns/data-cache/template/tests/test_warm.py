"""The warm command fills the cache the service reads."""

from __future__ import annotations

import fsspec
import pytest
from fastapi.testclient import TestClient
from redis import Redis

from src.app.config import SAMPLE_DATA_ID, Settings
from src.data.store import DataStore
from src.warm import main
from tests.conftest import png_with_a_bad_chunk
from tests.redis_server import RedisServer, free_port

SETTINGS = Settings.from_env()
ITEMS = DataStore(SETTINGS.data_uri, SETTINGS.max_item_bytes).ids()


def keys(redis_db: Redis) -> set[str]:
    """Every key in the test Redis."""
    return {key.decode() for key in redis_db.scan_iter(count=1000)}


@pytest.fixture
def warm_env(monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> None:
    """The warm command's environment, pointing at the test Redis."""
    monkeypatch.setenv("REDIS_URL", redis_server.url)


@pytest.mark.usefixtures("warm_env")
def test_warming_everything_makes_every_request_a_hit(
    client: TestClient, redis_db: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([]) == 0
    assert f"cached {len(ITEMS)} of {len(ITEMS)} items" in capsys.readouterr().out
    prefix = client.get("/metadata").json()["cache"]["key_prefix"]
    assert keys(redis_db) == {prefix + data_id for data_id in ITEMS}
    assert 0 < redis_db.ttl(prefix + ITEMS[-1]) <= SETTINGS.cache_ttl_seconds
    for data_id in (ITEMS[0], ITEMS[-1], SAMPLE_DATA_ID):
        answer = client.post("/predict", json={"data": data_id}).json()
        assert answer["cache"] == "hit"


def test_an_unreadable_item_is_skipped_counted_and_the_rest_cached(
    monkeypatch: pytest.MonkeyPatch,
    redis_server: RedisServer,
    redis_db: Redis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    memory = fsspec.filesystem("memory")
    good = DataStore(SETTINGS.data_uri, SETTINGS.max_item_bytes).read(SAMPLE_DATA_ID)
    memory.pipe("/warm-store/a-good.png", good)
    memory.pipe("/warm-store/b-bad-chunk.png", png_with_a_bad_chunk())
    memory.pipe("/warm-store/c-good.png", good)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("DATA_URI", "memory://warm-store")
    try:
        assert main([]) == 1
    finally:
        memory.rm("/warm-store", recursive=True)
    output = capsys.readouterr()
    assert "b-bad-chunk.png" in output.err
    assert "cached 2 of 3 items" in output.out
    assert len(keys(redis_db)) == 2


@pytest.mark.usefixtures("warm_env")
def test_warming_named_items_caches_only_those(client: TestClient, redis_db: Redis) -> None:
    assert main([ITEMS[1], ITEMS[2]]) == 0
    assert len(keys(redis_db)) == 2
    assert client.post("/predict", json={"data": ITEMS[1]}).json()["cache"] == "hit"
    assert client.post("/predict", json={"data": ITEMS[3]}).json()["cache"] == "miss"


@pytest.mark.usefixtures("warm_env")
def test_unknown_items_are_named_and_fail_the_run(
    redis_db: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([ITEMS[0], "no-such-item.png"]) == 1
    assert "no-such-item.png: no such item" in capsys.readouterr().err
    assert len(keys(redis_db)) == 1


@pytest.mark.usefixtures("warm_env")
def test_malformed_ids_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["../models/x.onnx"])
    assert stopped.value.code == 2
    assert "not a path" in capsys.readouterr().err


def test_an_unreachable_redis_fails_the_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    assert main([ITEMS[0]]) == 1
    assert "error: redis at redis://127.0.0.1:" in capsys.readouterr().err
