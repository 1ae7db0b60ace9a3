"""The queued side of the contract: jobs, their records, and a Redis that is away or full."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from src.app.config import DATA_SAMPLE
from src.jobs.store import STREAM
from tests.conftest import WorkerProcess, serve
from tests.redis_server import RedisServer, free_port

UNKNOWN_ID = "0123456789abcdef0123456789abcdef"


def poll(client: TestClient, job_id: str, seconds: float = 20) -> dict[str, Any]:
    """The job's record once it ended (done or failed); fail if it does not end in time."""
    deadline = time.monotonic() + seconds
    while True:
        response = client.get(f"/job/{job_id}")
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if job["status"] in ("done", "failed"):
            return job
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} still {job['status']} after {seconds} s")
        time.sleep(0.05)


def stream_length(url: str) -> int:
    """How many jobs wait or run in the queue at ``url``."""
    with redis.Redis.from_url(url) as connection:
        return int(connection.xlen(STREAM))


def test_a_job_is_queued_run_and_answered(
    redis_url: str, fast_path: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker(redis_url)
    with serve(redis_url, FAST_PATH=fast_path) as client:
        answer = client.post("/predict", json={"data": DATA_SAMPLE * 2}).json()
        fast = client.get("/predict/test").json()["prediction"]
        assert answer["queued"] is True
        assert answer["detail"] is None
        assert answer["prediction"] == fast * 2
        job = poll(client, answer["job_id"])
        labels = set(client.get("/label").json().values())
    assert job["status"] == "done", job
    assert job["attempts"] == 1
    assert job["created"] <= job["started"] <= job["finished"]
    assert len(job["prediction"]) == 2 * len(DATA_SAMPLE)
    for row in job["prediction"]:
        assert math.isclose(sum(row), 1.0, abs_tol=1e-4)
    assert set(job["labels"]) <= labels
    assert job["error"] is None


def test_a_job_waits_queued_until_a_worker_takes_it(redis_url: str) -> None:
    with serve(redis_url) as client:
        job_id = client.post("/predict", json={"data": DATA_SAMPLE}).json()["job_id"]
        job = client.get(f"/job/{job_id}").json()
    assert job["status"] == "queued"
    assert job["attempts"] == 0
    assert job["prediction"] is None
    assert stream_length(redis_url) == 1


@pytest.mark.parametrize("job_id", [UNKNOWN_ID, "not-a-job", "0" * 1000])
def test_an_unknown_job_is_404(client: TestClient, job_id: str) -> None:
    response = client.get(f"/job/{job_id}")
    assert response.status_code == 404
    assert "no such job" in response.json()["detail"]


def test_only_post_predict_queues_a_job(redis_url: str, fast_path: str) -> None:
    with serve(redis_url, FAST_PATH=fast_path) as client:
        assert client.post("/predict/label", json={"data": DATA_SAMPLE}).status_code == 200
        assert client.get("/predict/test").status_code == 200
        assert client.get("/predict/test/label").status_code == 200
        assert client.post("/predict", json={"data": [None]}).status_code == 422
        assert stream_length(redis_url) == 0
        assert client.post("/predict", json={"data": DATA_SAMPLE}).status_code == 200
    assert stream_length(redis_url) == 1


def test_without_redis_the_fast_answer_still_comes(fast_path: str) -> None:
    with serve(f"redis://127.0.0.1:{free_port()}/0", FAST_PATH=fast_path) as client:
        answer = client.post("/predict", json={"data": DATA_SAMPLE})
        assert answer.status_code == 200
        assert answer.json()["prediction"] == client.get("/predict/test").json()["prediction"]
        assert answer.json()["job_id"] is None
        assert answer.json()["queued"] is False
        assert "unavailable" in answer.json()["detail"]
        ready = client.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["queue"] == "unavailable"
        job = client.get(f"/job/{UNKNOWN_ID}")
        assert job.status_code == 503
        assert job.headers["retry-after"] == "1"


def test_a_full_queue_queues_nothing_and_says_so(redis_url: str, fast_path: str) -> None:
    with serve(redis_url, MAX_QUEUE_LENGTH="2", FAST_PATH=fast_path) as client:
        answers = [client.post("/predict", json={"data": DATA_SAMPLE}).json() for _ in range(3)]
    assert [answer["queued"] for answer in answers] == [True, True, False]
    assert "full" in answers[2]["detail"]
    assert answers[2]["prediction"] == answers[0]["prediction"]
    assert stream_length(redis_url) == 2


def test_job_records_expire(redis_url: str) -> None:
    with serve(redis_url, JOB_TTL_SECONDS="1") as client:
        job_id = client.post("/predict", json={"data": DATA_SAMPLE}).json()["job_id"]
        assert client.get(f"/job/{job_id}").status_code == 200
        time.sleep(1.5)
        assert client.get(f"/job/{job_id}").status_code == 404


def test_ready_reports_the_queue(client: TestClient) -> None:
    assert client.get("/ready").json() == {"ready": True, "queue": "ok", "detail": None}


def test_openapi_documents_the_job_api(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    job = schema["paths"]["/job/{job_id}"]["get"]
    assert {"200", "404", "503"} <= set(job["responses"])
    predict = schema["components"]["schemas"]["PredictJobResponse"]
    assert {"job_id", "prediction", "queued", "detail"} <= set(predict["properties"])
    statuses = schema["components"]["schemas"]["JobResponse"]["properties"]["status"]["enum"]
    assert statuses == ["queued", "running", "done", "failed"]


def test_acknowledged_jobs_survive_redis_being_killed(
    tmp_path: Path, start_worker: Callable[..., WorkerProcess]
) -> None:
    # Redis as deployed: an append-only file, synced every second. A SIGKILL loses nothing it
    # acknowledged (the file was written before the answer); only a crash of the machine may
    # lose the last second, which no test here can stage.
    server = RedisServer(tmp_path, durable=True)
    server.start()
    try:
        with serve(server.url, FAST_PATH="true") as client:
            body = {"data": DATA_SAMPLE}
            answers = [client.post("/predict", json=body).json() for _ in range(300)]
            acknowledged = [answer["job_id"] for answer in answers if answer["queued"]]
            assert len(acknowledged) == 300
            server.kill()
            server.start()
            worker = start_worker(server.url)
            jobs = [poll(client, job_id, seconds=60) for job_id in acknowledged]
    finally:
        server.stop()
    assert [job["status"] for job in jobs] == ["done"] * len(acknowledged)
    assert all(job["attempts"] == 1 for job in jobs)
    assert "failed" not in worker.output()
