"""The workers' side: taking, adopting and finishing jobs, the worker process and its probe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import redis

from src.app.config import DATA_SAMPLE, Settings
from src.jobs.config import QueueSettings
from src.jobs.consumer import Consumer, Delivery
from src.jobs.store import ENQUEUE, GROUP, STREAM, job_key, new_job_id
from src.ml.classifier import read_labels
from src.worker import probe
from tests.conftest import PROJECT, WorkerProcess, queue_settings

DONE = {"status": "done", "prediction": "[[1.0, 0.0, 0.0]]", "labels": '["a"]'}


@pytest.fixture
def connection(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client of the test's database."""
    with redis.Redis.from_url(redis_url) as client:
        yield client


def enqueue(connection: redis.Redis, settings: QueueSettings) -> str:
    """Queue one job the way the proxy does; its ID."""
    job_id = new_job_id()
    args = [job_id, orjson.dumps(DATA_SAMPLE), time.time(), settings.job_ttl_seconds, 100]
    assert connection.register_script(ENQUEUE)(keys=[STREAM, job_key(job_id)], args=args) == 1
    return job_id


def take(consumer: Consumer) -> Delivery:
    """The consumer's next job, which the test knows is there."""
    consumer.join()
    delivery = consumer.take()
    assert delivery is not None
    return delivery


def test_a_job_is_taken_started_and_finished_once(redis_url: str, connection: redis.Redis) -> None:
    settings = queue_settings(redis_url, BLOCK_MS="50")
    job_id = enqueue(connection, settings)
    worker = Consumer(connection, settings, "a")
    delivery = take(worker)
    assert delivery.job_id == job_id
    start = worker.start(delivery)
    assert (start.outcome, start.rows) == ("running", DATA_SAMPLE)
    assert worker.take() is None  # held, so nobody else gets it
    assert worker.finish(delivery, DONE)
    record = connection.hgetall(job_key(job_id))
    assert record[b"status"] == b"done"
    assert b"input" not in record
    assert connection.ttl(job_key(job_id)) > 0
    assert connection.xlen(STREAM) == 0
    assert connection.xpending(STREAM, GROUP)["pending"] == 0


def test_an_abandoned_job_is_adopted_and_only_its_new_holder_records(
    redis_url: str, connection: redis.Redis
) -> None:
    settings = queue_settings(redis_url, BLOCK_MS="50", CLAIM_IDLE_MS="1000")
    job_id = enqueue(connection, settings)
    first, second = Consumer(connection, settings, "a"), Consumer(connection, settings, "b")
    held = take(first)
    first.start(held)
    second.join()
    assert second.take() is None  # not idle long enough yet
    time.sleep(1.1)
    adopted = take(second)
    assert adopted == held
    assert second.start(adopted).outcome == "running"
    assert not first.finish(held, DONE)  # the first worker lost it: nothing is written
    assert connection.hget(job_key(job_id), "status") == b"running"
    assert second.finish(adopted, DONE)
    assert connection.hget(job_key(job_id), "attempts") == b"2"
    assert connection.xlen(STREAM) == 0


def test_a_job_that_keeps_losing_its_workers_is_failed(
    redis_url: str, connection: redis.Redis
) -> None:
    settings = queue_settings(redis_url, BLOCK_MS="50", CLAIM_IDLE_MS="50", MAX_ATTEMPTS="2")
    job_id = enqueue(connection, settings)
    for name in ("a", "b"):
        holder, delivery = take_when_idle(connection, settings, name)
        assert holder.start(delivery).outcome == "running"  # then the holder dies
    last, delivery = take_when_idle(connection, settings, "c")
    assert last.start(delivery).outcome == "gave-up"
    assert last.finish(delivery, {})
    record = connection.hgetall(job_key(job_id))
    assert record[b"status"] == b"failed"
    assert b"given up after 2 attempts" in record[b"error"]
    assert connection.xlen(STREAM) == 0


def take_when_idle(
    connection: redis.Redis, settings: QueueSettings, name: str
) -> tuple[Consumer, Delivery]:
    """A consumer ``name`` and the job it took once the last holder was silent long enough."""
    time.sleep(settings.claim_idle_ms / 1000 + 0.05)
    consumer = Consumer(connection, settings, name)
    return consumer, take(consumer)


def test_an_expired_job_is_not_run(redis_url: str, connection: redis.Redis) -> None:
    settings = queue_settings(redis_url, BLOCK_MS="50")
    job_id = enqueue(connection, settings)
    connection.delete(job_key(job_id))  # what its TTL does to a job that waited too long
    worker = Consumer(connection, settings, "a")
    delivery = take(worker)
    assert worker.start(delivery).outcome == "expired"
    assert worker.finish(delivery, {})
    assert not connection.exists(job_key(job_id))
    assert connection.xlen(STREAM) == 0


def test_the_group_is_made_again_after_redis_lost_it(
    redis_url: str, connection: redis.Redis
) -> None:
    settings = queue_settings(redis_url, BLOCK_MS="50")
    worker = Consumer(connection, settings, "a")
    worker.join()
    connection.flushdb()  # a Redis restarted without its data
    assert worker.take() is None
    job_id = enqueue(connection, settings)
    delivery = worker.take()
    assert delivery is not None
    assert delivery.job_id == job_id


def test_the_worker_runs_jobs_and_stops_cleanly_on_sigterm(
    redis_url: str, connection: redis.Redis, start_worker: Callable[..., WorkerProcess]
) -> None:
    settings = queue_settings(redis_url)
    job_id = enqueue(connection, settings)
    worker = start_worker(redis_url)
    deadline = time.monotonic() + 20
    while connection.hget(job_key(job_id), "status") != b"done":
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.05)
    labels = json.loads(connection.hget(job_key(job_id), "labels") or b"")
    assert len(labels) == len(DATA_SAMPLE)
    assert set(labels) <= set(read_labels(Settings.from_env().label_filepath))
    assert worker.stop() == 0
    output = worker.output()
    assert "stopped" in output
    assert "Traceback" not in output
    assert connection.xinfo_consumers(STREAM, GROUP) == []  # it left the group


def test_a_worker_without_its_model_does_not_start(tmp_path: Path, redis_url: str) -> None:
    worker = WorkerProcess(redis_url, tmp_path, SLOW_MODEL_FILEPATH=str(tmp_path / "none.onnx"))
    assert worker.process.wait(timeout=60) == 1
    assert "none.onnx" in worker.output()


def test_the_probe_reads_the_heartbeat(
    redis_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker(redis_url)
    command = [sys.executable, "-m", "src.worker.probe", "--ready"]
    env = {**os.environ, "HEARTBEAT_FILE": str(worker.heartbeat)}
    result = subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, check=False)
    assert result.returncode == 0, result.stderr
    assert worker.stop() == 0
    settings = queue_settings(redis_url, HEARTBEAT_FILE=str(worker.heartbeat))
    later = time.time() + settings.heartbeat_max_age + 1
    assert "last heartbeat" in (probe.check(settings, ready=False, now=later) or "")
    worker.heartbeat.write_text(json.dumps({"time": time.time(), "redis": False}))
    assert probe.check(settings, ready=False) is None
    assert "Redis" in (probe.check(settings, ready=True) or "")
    worker.heartbeat.unlink()
    assert "no heartbeat" in (probe.check(settings, ready=False) or "")
