"""The sync-async pattern for real: its proxy (run.sh), worker processes and a real redis-server.

A job's whole life over HTTP; a worker killed with SIGKILL while it holds a job; 200 jobs through
two workers, none lost and none run twice; Redis going away under a running service and coming back.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, RedisServer, free_port

pytestmark = pytest.mark.slow

PATTERN = "sync-async"
SAMPLE = json.loads((REPO / "sample_models" / "iris" / "reference.json").read_text())
SLOW = json.loads((REPO / "sample_models" / "iris-slow" / "reference.json").read_text())
TYPICAL = {"versicolor": [5.9, 2.8, 4.3, 1.3], "virginica": [6.6, 3.0, 5.6, 2.0]}
UNKNOWN_ID = "0123456789abcdef0123456789abcdef"
# The service's own limit: the largest job, which keeps a worker busy longest.
MAX_ROWS = 1000


def call(url: str, body: Any = None) -> tuple[int, Any]:
    """GET ``url`` (or POST ``body`` as JSON); the status and the decoded answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


class Process:
    """A started process of the service; its output goes to a file, not a pipe nobody reads."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                command, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        """Everything it printed so far."""
        return self.log.read_text(errors="replace")

    def send(self, sig: int) -> None:
        """Send ``sig`` if it still runs."""
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` (a stopped process is continued first) and return the exit status."""
        self.send(signal.SIGCONT)
        self.send(sig)
        return self.process.wait(timeout=30)


class Service:
    """The proxy started with run.sh on a free port, and the workers a test starts beside it."""

    def __init__(self, project: Path, python: Path, redis: RedisServer, folder: Path) -> None:
        self.project = project
        self.python = python
        self.redis = redis
        self.folder = folder
        self.base = f"http://127.0.0.1:{free_port()}"
        self.env = {
            **os.environ,
            "PATH": f"{python.parent}:{os.environ['PATH']}",
            "REDIS_URL": redis.url,
            # A dead worker's job is taken over after 1 s instead of 30: the tests stay short.
            "CLAIM_IDLE_MS": "1000",
            "BLOCK_MS": "200",
        }
        port = self.base.rsplit(":", 1)[1]
        proxy_env = {**self.env, "HOST": "127.0.0.1", "PORT": port, "WORKERS": "2"}
        proxy_env["ACCESS_LOG"] = "true"  # so that a 500 would show
        self.proxy = Process([str(project / "run.sh")], Path("/"), proxy_env, folder / "proxy.log")
        self.workers: list[Process] = []

    def wait_ready(self, seconds: float = 60) -> None:
        """Poll /ready until 200; fail with the proxy's output if it never gets there."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proxy.process.poll() is not None:
                pytest.fail(f"the proxy exited:\n{self.proxy.output()}")
            try:
                if call(f"{self.base}/ready")[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.2)
        pytest.fail(f"/ready was not 200 within {seconds} s:\n{self.proxy.output()}")

    def start_worker(self) -> Process:
        """A worker (``python -m src.worker``), returned once it joined the queue."""
        index = len(self.workers)
        env = {**self.env, "HEARTBEAT_FILE": str(self.folder / f"worker-{index}.heartbeat")}
        log = self.folder / f"worker-{index}.log"
        worker = Process([str(self.python), "-m", "src.worker"], self.project, env, log)
        self.workers.append(worker)
        deadline = time.monotonic() + 60
        while "joined the queue" not in worker.output():
            if worker.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the worker did not join the queue:\n{worker.output()}")
            time.sleep(0.05)
        return worker

    def predict(self, rows: list[list[float]]) -> dict[str, Any]:
        """POST /predict, which must answer 200."""
        status, answer = call(f"{self.base}/predict", {"data": rows})
        assert status == 200, answer
        result: dict[str, Any] = answer
        return result

    def job(self, job_id: str) -> dict[str, Any]:
        """GET /job/{job_id}, which must answer 200."""
        status, answer = call(f"{self.base}/job/{job_id}")
        assert status == 200, answer
        result: dict[str, Any] = answer
        return result

    def wait_ended(self, job_ids: list[str], seconds: float = 60) -> dict[str, dict[str, Any]]:
        """Every job's record once all of them are done or failed."""
        deadline = time.monotonic() + seconds
        ended: dict[str, dict[str, Any]] = {}
        while len(ended) < len(job_ids):
            for job_id in job_ids:
                if job_id not in ended:
                    record = self.job(job_id)
                    if record["status"] in ("done", "failed"):
                        ended[job_id] = record
            if time.monotonic() > deadline:
                logs = "\n".join(worker.output() for worker in self.workers)
                pytest.fail(f"{len(job_ids) - len(ended)} jobs did not end in time:\n{logs}")
            time.sleep(0.05)
        return ended

    def close(self) -> None:
        """Stop everything this service started."""
        for worker in self.workers:
            worker.stop(signal.SIGKILL)
        self.proxy.stop()


# Parametrized by the pattern's name so that ``-k sync-async`` selects these tests too.
@pytest.fixture(params=[PATTERN])
def service(
    request: pytest.FixtureRequest,
    generated_project: Callable[[str], Path],
    service_python: Callable[[Path], Path],
    redis_server: RedisServer,
    tmp_path: Path,
) -> Iterator[Service]:
    """The generated sync-async service, its proxy ready, against a fresh redis-server."""
    project = generated_project(request.param)
    running = Service(project, service_python(project), redis_server, tmp_path)
    try:
        running.wait_ready()
        yield running
    finally:
        running.close()
    assert "Traceback" not in running.proxy.output()
    assert '" 500' not in running.proxy.output()


def finished_jobs(worker: Process) -> list[str]:
    """The IDs of the jobs a worker recorded as done, from its log."""
    return re.findall(r"job ([0-9a-f]{32}) done", worker.output())


def test_a_job_lives_from_predict_to_done(service: Service) -> None:
    service.start_worker()
    answer = service.predict(SAMPLE["data_sample"] + list(TYPICAL.values()))
    assert answer["queued"] is True
    assert answer["prediction"][0] == pytest.approx(SAMPLE["prediction_sample"][0], abs=1e-4)
    job = service.wait_ended([answer["job_id"]])[answer["job_id"]]
    assert job["status"] == "done", job
    assert job["attempts"] == 1
    # The slow model's answer, as its training framework gave it.
    assert job["prediction"][0] == pytest.approx(SLOW["prediction_sample"][0], abs=1e-4)
    assert job["labels"] == ["setosa", *TYPICAL]
    assert call(f"{service.base}/job/{UNKNOWN_ID}")[0] == 404
    assert call(f"{service.base}/job/not-a-job")[0] == 404


def redis_client_list(port: int) -> str:
    """Redis's CLIENT LIST: one line per open connection, named after its worker."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"CLIENT LIST\r\n")
        reply = sock.makefile("rb")
        size = int(reply.readline()[1:])
        return reply.read(size).decode()


def kill_while_holding(service: Service, job_ids: list[str]) -> tuple[Process, str]:
    """Start a worker and SIGKILL it while it holds a job; the worker and that job's ID.

    The worker is frozen (SIGSTOP) until a job reads ``running``, then killed. Once Redis has
    dropped its connection, everything it sent has been applied: a job still ``running`` then is
    one it held. If its last job got recorded after all, another worker is tried.
    """
    for _ in range(10):
        worker = service.start_worker()
        name = re.findall(r"worker (\S+) joined the queue", worker.output())[0]
        deadline = time.monotonic() + 30
        while worker.process.poll() is None:
            assert time.monotonic() < deadline, "the worker was never seen running a job"
            worker.send(signal.SIGSTOP)
            if any(service.job(job_id)["status"] == "running" for job_id in job_ids):
                worker.stop(signal.SIGKILL)
            else:
                worker.send(signal.SIGCONT)
                time.sleep(0.01)
        while f"name={name} " in redis_client_list(service.redis.port):
            time.sleep(0.05)
        held = [job_id for job_id in job_ids if service.job(job_id)["status"] == "running"]
        if held:
            return worker, held[0]
    pytest.fail("never caught a worker holding a job")


def test_a_job_held_by_a_killed_worker_is_finished_by_another(service: Service) -> None:
    big = [SAMPLE["data_sample"][0]] * MAX_ROWS
    job_ids = [service.predict(big)["job_id"] for _ in range(100)]
    first, held = kill_while_holding(service, job_ids)
    assert first.process.returncode == -signal.SIGKILL
    assert held not in finished_jobs(first)
    record = service.job(held)
    assert (record["status"], record["attempts"]) == ("running", 1)
    second = service.start_worker()
    ended = service.wait_ended(job_ids)
    assert ended[held]["status"] == "done"
    assert ended[held]["attempts"] == 2
    assert held in finished_jobs(second)
    assert len(ended[held]["prediction"]) == MAX_ROWS
    others = [record["attempts"] for job_id, record in ended.items() if job_id != held]
    assert set(others) == {1}


def test_200_jobs_through_two_workers_none_lost_none_run_twice(service: Service) -> None:
    workers = [service.start_worker(), service.start_worker()]
    rows = [row for row in TYPICAL.values()]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: service.predict(rows), range(200)))
    job_ids = [answer["job_id"] for answer in answers]
    assert all(answer["queued"] for answer in answers)
    assert len(set(job_ids)) == 200
    ended = service.wait_ended(job_ids)
    assert [record["status"] for record in ended.values()] == ["done"] * 200
    assert {record["attempts"] for record in ended.values()} == {1}
    assert all(record["labels"] == list(TYPICAL) for record in ended.values())
    runs = Counter(job_id for worker in workers for job_id in finished_jobs(worker))
    assert set(runs) == set(job_ids)
    assert set(runs.values()) == {1}


def test_without_redis_the_fast_answer_still_comes_and_jobs_resume(service: Service) -> None:
    service.start_worker()
    service.redis.stop(signal.SIGKILL)
    answer = service.predict(SAMPLE["data_sample"])
    assert answer["prediction"][0] == pytest.approx(SAMPLE["prediction_sample"][0], abs=1e-4)
    assert (answer["job_id"], answer["queued"]) == (None, False)
    assert "unavailable" in answer["detail"]
    status, ready = call(f"{service.base}/ready")
    assert (status, ready["ready"], ready["queue"]) == (200, True, "unavailable")
    assert call(f"{service.base}/job/{UNKNOWN_ID}")[0] == 503
    service.redis.start()  # the same port, empty: the group must be made again
    deadline = time.monotonic() + 15
    while not (answer := service.predict(SAMPLE["data_sample"]))["queued"]:
        assert time.monotonic() < deadline, "jobs were not queued again after Redis came back"
        time.sleep(0.2)
    # Each proxy process finds Redis back on its own: one still backing off answers 503 (<= 1 s).
    deadline = time.monotonic() + 30
    while (reply := call(f"{service.base}/job/{answer['job_id']}"))[1].get("status") != "done":
        assert reply[0] in (200, 503), reply
        assert time.monotonic() < deadline, "the job queued after Redis came back was not run"
        time.sleep(0.2)
