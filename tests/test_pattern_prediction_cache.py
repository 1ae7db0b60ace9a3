"""The prediction-cache pattern for real: its own run.sh (two workers) and a real redis-server.

Everything runs on 127.0.0.1: gunicorn with two workers (so a hit may be served by another worker
than the miss that cached it), and Redis flushed, stopped and restarted by the tests. The
generated project's own tests (run by test_service.py) cover the cache in depth in one process.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from conftest import REPO, RedisServer
from test_pattern_data_cache import redis_cli, serving_with
from test_service import Server, call

from builder_core.patterns import load_pattern

pytestmark = pytest.mark.slow

PATTERN = "prediction-cache"
INFO = load_pattern(PATTERN).info
FOREST = json.loads((REPO / "sample_models" / "iris-slow" / "reference.json").read_text())
# The background write of a miss may land just after the next request arrives.
HIT_SECONDS = 5.0


def post(base: str, rows: object, path: str = "/predict") -> tuple[int, str, bytes]:
    """POST ``{"data": rows}``; the status, the ``cache`` header and the raw answer."""
    request = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps({"data": rows}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.headers.get("cache", ""), response.read()


def until_hit(base: str, rows: object) -> bytes:
    """Ask for ``rows`` until the cache answers; its answer (a failure after HIT_SECONDS)."""
    deadline = time.monotonic() + HIT_SECONDS
    while time.monotonic() < deadline:
        status, outcome, answer = post(base, rows)
        assert status == 200, answer
        if outcome == "hit":
            return answer
        time.sleep(0.05)
    pytest.fail(f"{rows} was never answered from the cache within {HIT_SECONDS} s")


@pytest.fixture(scope="module")
def project(generated_project: Callable[[str], Path]) -> Path:
    """The pattern generated with its default variables."""
    return generated_project(PATTERN)


@pytest.fixture(scope="module")
def live(
    project: Path, service_python: Callable[[Path], Path], redis: RedisServer
) -> Iterator[tuple[str, Server]]:
    """The service started with its own run.sh (two workers), pointed at the test Redis."""
    with serving_with(project, service_python(project), redis) as running:
        yield running


@pytest.fixture
def empty(redis: RedisServer) -> RedisServer:
    """The test Redis with no keys: every request starts as a miss."""
    assert redis_cli(redis, "FLUSHALL") == b"OK"
    return redis


def test_every_worker_serves_what_one_cached(live: tuple[str, Server], empty: RedisServer) -> None:
    base, _ = live
    status, outcome, first = post(base, FOREST["data_sample"])
    assert (status, outcome) == (200, "miss")
    # The forest's own scores of the sample row: the answer is the model's.
    assert json.loads(first)["prediction"][0] == pytest.approx(
        FOREST["prediction_sample"][0], abs=1e-4
    )
    assert until_hit(base, FOREST["data_sample"]) == first
    # Twenty requests over several connections reach both workers: every one is a hit.
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: post(base, FOREST["data_sample"]), range(20)))
    assert {(status, outcome, body) for status, outcome, body in answers} == {(200, "hit", first)}
    assert redis_cli(empty, "--scan", "--pattern", "*:answer:*").count(b":answer:") == 1


def test_redis_stopped_mid_test_still_answers_200_uncached(
    live: tuple[str, Server], redis: RedisServer
) -> None:
    base, server = live
    rows = [[6.1, 2.8, 4.7, 1.2]]
    post(base, rows)
    cached = until_hit(base, rows)
    redis.stop()
    try:
        answers = [post(base, rows) for _ in range(10)]
        assert {(status, outcome) for status, outcome, _ in answers} == {(200, "bypass")}
        assert {body for _, _, body in answers} == {cached}
        assert call(f"{base}/ready")[1]["cache"] == "degraded"
        assert "serving uncached" in server.output()
    finally:
        redis.start()
    deadline = time.monotonic() + 10
    while post(base, rows)[1] == "bypass":
        assert time.monotonic() < deadline, "the cache did not come back"
        time.sleep(0.2)
    assert "Traceback" not in server.output()


def test_hits_and_misses_reach_metrics(live: tuple[str, Server], empty: RedisServer) -> None:
    base, _ = live
    rows = [[5.0, 3.4, 1.5, 0.2], [7.7, 2.6, 6.9, 2.3]]
    post(base, rows)
    until_hit(base, rows)
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = {
        line.split("{")[1].split("}")[0]: float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("prediction_cache_lookups_total{")
    }
    assert found['result="hit"'] >= 1
    assert found['result="miss"'] >= 1


def test_compose_and_manifests_configure_the_cache_policy(project: Path) -> None:
    compose = yaml.safe_load((project / "docker-compose.yml").read_text())
    command = compose["services"]["redis"]["command"]
    memory = f"{INFO.defaults()['redis_maxmemory_mb']}mb"
    assert command[command.index("--maxmemory") + 1] == memory
    assert command[command.index("--maxmemory-policy") + 1] == "allkeys-lru"
    assert compose["services"]["api"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert compose["services"]["api"]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    redis_deployment = yaml.safe_load((project / "manifests" / "redis-deployment.yaml").read_text())
    args = redis_deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--maxmemory") + 1] == memory
    assert args[args.index("--maxmemory-policy") + 1] == "allkeys-lru"
    config = yaml.safe_load((project / "manifests" / "configmap.yaml").read_text())
    assert config["data"]["REDIS_URL"].endswith("-redis:6379/0")
