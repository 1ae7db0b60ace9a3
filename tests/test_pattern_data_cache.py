"""The data-cache pattern for real: its service started with its own run.sh, a real redis-server.

Everything runs on 127.0.0.1: gunicorn with two workers (so a hit may be served by another worker
than the miss that cached it), Redis started, flushed, stopped and restarted by the tests, and the
project's own warm command.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import REPO, RedisServer, free_port
from test_service import Server, call, start, wait_ready

from builder_core import build
from builder_core.patterns import load_pattern

pytestmark = pytest.mark.slow

PATTERN = "data-cache"
INFO = load_pattern(PATTERN).info
SAMPLE_ID = str(INFO.defaults()["sample_data_id"])
REFERENCE = json.loads((REPO / "sample_models" / "digits" / "reference.json").read_text())
# The background write of a miss may land just after the next request arrives.
HIT_SECONDS = 5.0


def redis_cli(server: RedisServer, *args: str) -> bytes:
    """One command through redis-cli; the raw reply without the newline redis-cli adds."""
    binary = shutil.which("redis-cli")
    if binary is None:
        pytest.fail("redis-cli is not installed (apt-get install redis-tools)")
    result = subprocess.run(
        [binary, "-p", str(server.port), "--raw", *args],
        capture_output=True,
        timeout=10,
        check=True,
    )
    return result.stdout.removesuffix(b"\n")


def post(base: str, path: str, data_id: Any) -> tuple[int, Any]:
    """POST ``{"data": data_id}``."""
    return call(f"{base}{path}", json.dumps({"data": data_id}).encode())


def until_hit(base: str, data_id: str) -> dict[str, Any]:
    """Ask for ``data_id`` until the cache serves it; the answer (a failure after HIT_SECONDS)."""
    deadline = time.monotonic() + HIT_SECONDS
    while time.monotonic() < deadline:
        status, answer = post(base, "/predict", data_id)
        assert status == 200, answer
        if answer["cache"] == "hit":
            return dict(answer)
        time.sleep(0.05)
    pytest.fail(f"{data_id} was never served from the cache within {HIT_SECONDS} s")


def cache_health(base: str, want: str, seconds: float = 10) -> str:
    """Poll /ready until both workers report ``want`` for the cache (or time runs out)."""
    deadline = time.monotonic() + seconds
    seen: list[str] = []
    while time.monotonic() < deadline:
        seen = [call(f"{base}/ready")[1]["cache"] for _ in range(6)]
        if set(seen) == {want}:
            return want
        time.sleep(0.2)
    return ",".join(seen)


@pytest.fixture(scope="module")
def project(generated_project: Callable[[str], Path]) -> Path:
    """The pattern generated with its default variables."""
    return generated_project(PATTERN)


@pytest.fixture(scope="module")
def python(project: Path, service_python: Callable[[Path], Path]) -> Path:
    """A virtualenv with the project's pinned requirements."""
    return service_python(project)


@contextlib.contextmanager
def serving_with(project: Path, python: Path, redis: RedisServer) -> Iterator[tuple[str, Server]]:
    """The service started with its own run.sh (two workers), pointed at ``redis``."""
    port = free_port()
    os.environ["REDIS_URL"] = redis.url
    try:
        server = start(project, python, port)
    finally:
        del os.environ["REDIS_URL"]
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server)
        yield base, server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def live(project: Path, python: Path, redis: RedisServer) -> Iterator[tuple[str, Server]]:
    """The service started with its own run.sh (two workers), pointed at the test Redis."""
    with serving_with(project, python, redis) as running:
        yield running


@pytest.fixture
def empty(redis: RedisServer) -> RedisServer:
    """The test Redis with no keys: every item starts as a miss."""
    assert redis_cli(redis, "FLUSHALL") == b"OK"
    return redis


def test_a_miss_then_a_hit_with_log_lines_and_the_same_prediction(
    live: tuple[str, Server], empty: RedisServer
) -> None:
    base, server = live
    status, first = post(base, "/predict", SAMPLE_ID)
    assert status == 200
    assert (first["data_id"], first["cache"]) == (SAMPLE_ID, "miss")
    hit = until_hit(base, SAMPLE_ID)
    assert hit["prediction"] == first["prediction"]
    # The training framework's scores of the sample item: preprocessing is the trained one.
    assert first["prediction"][0] == pytest.approx(REFERENCE["prediction_sample"][0], abs=1e-4)
    output = server.output()
    assert f"registering cache: {SAMPLE_ID}" in output
    assert f"cache hit: {SAMPLE_ID}" in output
    assert output.index(f"registering cache: {SAMPLE_ID}") < output.index(f"cache hit: {SAMPLE_ID}")
    labels = post(base, "/predict/label", SAMPLE_ID)[1]
    names = call(f"{base}/label")[1]
    assert labels["cache"] == "hit"
    assert labels["prediction"] == [names[str(int(np.argmax(first["prediction"][0])))]]


def test_the_cached_tensor_is_the_training_scripts_preprocessing(
    live: tuple[str, Server], empty: RedisServer
) -> None:
    base, _ = live
    assert post(base, "/predict", SAMPLE_ID)[1]["cache"] == "miss"
    until_hit(base, SAMPLE_ID)
    prefix = call(f"{base}/metadata")[1]["cache"]["key_prefix"]
    cached = np.load(io.BytesIO(redis_cli(empty, "GET", prefix + SAMPLE_ID)), allow_pickle=False)
    fresh = np.asarray(REFERENCE["data_sample"][0], dtype=np.float32)
    assert cached.dtype == np.float32
    assert np.array_equal(cached, fresh)
    ttl = int(redis_cli(empty, "TTL", prefix + SAMPLE_ID))
    assert 0 < ttl <= int(INFO.defaults()["cache_ttl_seconds"])


BAD_IDS = {
    "parent folder": "../models/label.json",
    "absolute path": "/etc/passwd",
    "separator": f"sub/{SAMPLE_ID}",
    "backslash": f"sub\\{SAMPLE_ID}",
    "dot dot": "..",
    "URL scheme": "file:///etc/passwd",
    "s3 URL": "s3://bucket/key.png",
    "hidden": ".bashrc",
    "not a string": 7,
    "empty": "",
}


@pytest.mark.parametrize("data_id", BAD_IDS.values(), ids=BAD_IDS.keys())
def test_traversal_and_malformed_ids_are_422(live: tuple[str, Any], data_id: Any) -> None:
    base, _ = live
    for path in ("/predict", "/predict/label"):
        status, answer = post(base, path, data_id)
        assert status == 422, (path, answer)
        assert answer["detail"][0]["loc"] == ["body", "data"]


def test_an_unknown_id_is_404(live: tuple[str, Any]) -> None:
    base, _ = live
    status, answer = post(base, "/predict", "digit-9999.png")
    assert status == 404
    assert "digit-9999.png" in answer["detail"]


def test_the_warm_command_fills_the_cache(
    live: tuple[str, Server], empty: RedisServer, project: Path, python: Path
) -> None:
    base, _ = live
    items = sorted(path.name for path in (project / "data").iterdir())
    result = subprocess.run(
        [str(python), "-m", "src.warm"],
        cwd=project,
        env={**os.environ, "REDIS_URL": empty.url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"cached {len(items)} of {len(items)} items" in result.stdout
    assert int(redis_cli(empty, "DBSIZE")) == len(items)
    # Never asked for before, yet a hit: the warm command wrote the keys the service reads.
    status, answer = post(base, "/predict", items[-1])
    assert (status, answer["cache"]) == (200, "hit")


def test_redis_stopped_mid_test_still_answers_200_uncached(
    live: tuple[str, Server], redis: RedisServer
) -> None:
    base, server = live
    assert cache_health(base, "ok") == "ok"
    redis.stop()
    try:
        answers = [post(base, "/predict", data_id) for data_id in ("digit-0001.png", SAMPLE_ID) * 5]
        assert [status for status, _ in answers] == [200] * 10
        assert {answer["cache"] for _, answer in answers} == {"bypass"}
        assert call(f"{base}/predict/test")[0] == 200
        assert cache_health(base, "degraded") == "degraded"
        assert "serving uncached" in server.output()
    finally:
        redis.start()
    assert cache_health(base, "ok") == "ok"
    assert post(base, "/predict", "digit-0002.png")[1]["cache"] in ("miss", "hit")
    assert "Traceback" not in server.output()


def test_compose_and_manifests_configure_the_cache_policy(project: Path) -> None:
    compose = yaml.safe_load((project / "docker-compose.yml").read_text())
    command = compose["services"]["redis"]["command"]
    memory = f"{INFO.defaults()['redis_maxmemory_mb']}mb"
    assert command[command.index("--maxmemory") + 1] == memory
    assert command[command.index("--maxmemory-policy") + 1] == "allkeys-lru"
    assert compose["services"]["api"]["depends_on"]["redis"]["condition"] == "service_healthy"
    redis_deployment = yaml.safe_load((project / "manifests" / "redis-deployment.yaml").read_text())
    args = redis_deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--maxmemory") + 1] == memory
    assert args[args.index("--maxmemory-policy") + 1] == "allkeys-lru"
    job = yaml.safe_load((project / "manifests" / "warm-job.yaml").read_text())
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "src.warm"
    assert job["spec"]["backoffLimit"] >= 1
    assert job["spec"]["ttlSecondsAfterFinished"] > 0


def test_a_model_that_does_not_take_the_preprocessed_tensor_stops_the_service(
    tmp_path: Path, service_python: Callable[[Path], Path]
) -> None:
    variables = yaml.safe_load((REPO / "patterns" / PATTERN / "vars.yaml").read_text())
    variables["image_side"] = 8
    (tmp_path / "vars.yaml").write_text(yaml.safe_dump(variables))
    project = build(
        pattern=PATTERN, variable_file=tmp_path / "vars.yaml", output_dir=tmp_path / "out"
    ).target
    server = start(project, service_python(project), free_port())
    assert server.process.wait(timeout=60) != 0
    assert "takes rows of shape [256], but preprocessing makes [64]" in server.output()
