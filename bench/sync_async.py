"""Sync-async benchmark: what a backlog of slow jobs costs the synchronous answer.

    python bench/sync_async.py [--rounds 3] [--seconds 3] [--rate 400] [--backlog 2000]

Generates the sync-async service and starts a redis-server, the proxy (its own run.sh, two
workers) and two queue workers on 127.0.0.1. Then it measures POST /predict of one row (the fast
model's answer, plus queueing a job) at a fixed rate over kept-alive connections, in rounds of two
phases of equal length, the queue drained before each:

1. empty queue: the workers only have the jobs the measured requests queue, and keep up;
2. backlog: ``--backlog`` jobs of 1000 rows each are queued first (workers paused meanwhile),
   then the same load is measured while the workers work through them; the backlog must not run
   dry during the phase.

Prints p50 and p99 of each phase over all rounds, their ratio, how many jobs were still queued at
the end of each phase (redis-cli XLEN), and the rate the backlog was worked at. Where the machine
has two or more CPUs, the workers are pinned to the last one and everything else (this load
included) to the others: in production the workers run in their own containers, and what is
measured is the queue's cost to the proxy, not a fight for one core. Bounded: 2 x rounds phases of
``--seconds``, plus queueing and working off each backlog. The virtualenv goes under .bench/.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
sys.path.insert(0, str(REPO))

from builder_core import build  # noqa: E402 - needs the checkout on sys.path

WORK = REPO / ".bench"
ROW = [5.1, 3.5, 1.4, 0.2]
BACKLOG_ROWS = 1000
NAME = "bench-sync-async"
STREAM = f"{NAME}:jobs"  # the service's job stream: every key starts with its name
HEADERS = {"content-type": "application/json"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(what: str, check: Callable[[], bool], seconds: float = 60) -> None:
    """Return once ``check()`` is true; exit with ``what`` if it never gets there."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{what} within {seconds} s")


def service_python(project: Path) -> Path:
    """A virtualenv under .bench/ with the project's pinned requirements."""
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit("uv is required (pip install uv)")
    venv = WORK / "venv-sync-async"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    requirements = str(project / "requirements.txt")
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(python), "-r", requirements], check=True
    )
    return python


def cpu_split() -> tuple[set[int], set[int]]:
    """The CPUs of the proxy, Redis and the load; the CPUs of the queue workers."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return set(cpus), set(cpus)
    return set(cpus[:-1]), {cpus[-1]}


@dataclass
class Stack:
    """Everything started for one run; ``stop`` ends it all."""

    base: str
    redis_port: int
    front: set[int]
    back: set[int]
    processes: list[subprocess.Popen[bytes]]
    workers: list[subprocess.Popen[bytes]]

    def pause_workers(self, paused: bool) -> None:
        """Freeze (SIGSTOP) or resume (SIGCONT) the queue workers."""
        for worker in self.workers:
            worker.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)

    def stop(self) -> None:
        """Resume and terminate every process, workers first."""
        self.pause_workers(False)
        for process in [*self.workers, *self.processes]:
            process.terminate()
        for process in [*self.workers, *self.processes]:
            process.wait(timeout=30)


def spawn(
    command: list[str], cwd: Path, env: dict[str, str], log: Path, cpus: set[int]
) -> subprocess.Popen[bytes]:
    """Start ``command`` on ``cpus`` (its children too) with its output in ``log``."""
    with log.open("wb") as sink:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            # Set in the child before it runs anything, so the processes it forks inherit it.
            preexec_fn=lambda: os.sched_setaffinity(0, cpus),
        )


@contextmanager
def started(project: Path, python: Path, folder: Path, workers: int) -> Iterator[Stack]:
    """Redis, the proxy and ``workers`` queue workers, ready; all stopped afterwards."""
    front, back = cpu_split()
    # The load runs beside the proxy: the queue workers keep a CPU of their own.
    os.sched_setaffinity(0, front)
    redis_port, port = free_port(), free_port()
    env = {
        **os.environ,
        "PATH": f"{python.parent}:{os.environ['PATH']}",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "LOG_LEVEL": "warning",
        "MAX_QUEUE_LENGTH": "1000000",
    }
    redis = ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
    redis += ["--appendonly", "no", "--dir", str(folder)]
    stack = Stack(f"http://127.0.0.1:{port}", redis_port, front, back, [], [])
    try:
        stack.processes.append(spawn(redis, folder, env, folder / "redis.log", front))
        proxy_env = {**env, "HOST": "127.0.0.1", "PORT": str(port), "WORKERS": "2"}
        run_sh = [str(project / "run.sh")]
        stack.processes.append(spawn(run_sh, project, proxy_env, folder / "proxy.log", front))
        wait_until("the proxy was not ready", lambda: get(stack.base, "/ready")[0] == 200)
        for index in range(workers):
            worker_env = {**env, "HEARTBEAT_FILE": str(folder / f"worker-{index}.heartbeat")}
            command = [str(python), "-m", "src.worker"]
            log = folder / f"worker-{index}.log"
            stack.workers.append(spawn(command, project, worker_env, log, back))
        yield stack
    finally:
        stack.stop()


def get(base: str, path: str) -> tuple[int, Any]:
    """GET ``path``: the status and the decoded answer."""
    host, port = base.removeprefix("http://").split(":")
    with closing(http.client.HTTPConnection(host, int(port), timeout=10)) as connection:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read())


def measure(base: str, seconds: float, connections: int, rate: float) -> list[float]:
    """Seconds per POST /predict of one row, at ``rate`` requests/s over kept-alive connections.

    A fixed rate, not as fast as possible: a saturated proxy would measure its own queueing, and
    its intake would outrun the workers, so that the "empty" queue would not stay empty.
    """
    host, port = base.removeprefix("http://").split(":")
    body = json.dumps({"data": [ROW]})
    interval = connections / rate
    stop_at = time.monotonic() + seconds

    def client(index: int) -> list[float]:
        samples = []
        due = time.monotonic() + interval * index / connections
        with closing(http.client.HTTPConnection(host, int(port), timeout=10)) as connection:
            while due < stop_at:
                time.sleep(max(0.0, due - time.monotonic()))
                due = max(due + interval, time.monotonic())  # late: no burst to catch up
                began = time.perf_counter()
                connection.request("POST", "/predict", body, HEADERS)
                response = connection.getresponse()
                answer = json.loads(response.read())
                samples.append(time.perf_counter() - began)
                if response.status != 200 or not answer["queued"]:
                    raise SystemExit(f"POST /predict answered {response.status}: {answer}")
        return samples

    with ThreadPoolExecutor(max_workers=connections) as pool:
        return [sample for samples in pool.map(client, range(connections)) for sample in samples]


def queue_backlog(base: str, jobs: int, connections: int) -> list[str]:
    """Queue ``jobs`` jobs of BACKLOG_ROWS rows each; their IDs, in the order queued."""
    host, port = base.removeprefix("http://").split(":")
    body = json.dumps({"data": [ROW] * BACKLOG_ROWS})
    share = -(-jobs // connections)

    def client(index: int) -> list[str]:
        ids = []
        with closing(http.client.HTTPConnection(host, int(port), timeout=30)) as connection:
            for _ in range(min(share, jobs - index * share)):
                connection.request("POST", "/predict", body, HEADERS)
                ids.append(json.loads(connection.getresponse().read())["job_id"])
        return ids

    with ThreadPoolExecutor(max_workers=connections) as pool:
        return [job_id for ids in pool.map(client, range(connections)) for job_id in ids]


def queued(stack: Stack) -> int:
    """Jobs waiting or running: the length of the service's stream."""
    command = ["redis-cli", "-p", str(stack.redis_port), "XLEN", STREAM]
    return int(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def drain(stack: Stack) -> None:
    """Wait until the workers worked off every job."""
    wait_until("the queue was not worked off", lambda: queued(stack) == 0, seconds=600)


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99, in milliseconds."""
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return statistics.median(samples) * 1000, cuts[98] * 1000


@dataclass
class Phase:
    """What one phase measured, over every round."""

    name: str
    samples: list[float] = field(default_factory=list)
    left: list[int] = field(default_factory=list)  # jobs still queued when the phase ended
    worked: list[int] = field(default_factory=list)  # backlog jobs worked during the phase


def run_round(args: argparse.Namespace, stack: Stack, empty: Phase, backlog: Phase) -> None:
    """One round: the empty-queue phase, then the backlog phase; the queue drained before each."""
    drain(stack)
    empty.samples += measure(stack.base, args.seconds, args.connections, args.rate)
    empty.left.append(queued(stack))
    drain(stack)
    stack.pause_workers(True)
    queue_backlog(stack.base, args.backlog, args.connections)
    stack.pause_workers(False)
    samples = measure(stack.base, args.seconds, args.connections, args.rate)
    left = queued(stack)
    # First in, first out: while more jobs wait than the phase queued, all that went was backlog.
    if left <= len(samples):
        raise SystemExit("the backlog ran dry during the phase: raise --backlog")
    backlog.samples += samples
    backlog.left.append(left)
    backlog.worked.append(args.backlog + len(samples) - left)


def report(args: argparse.Namespace, stack: Stack, empty: Phase, backlog: Phase) -> None:
    """Print the table."""
    print(
        f"sync-async: {args.rounds} rounds x 2 phases x {args.seconds:g} s at {args.rate:g} "
        f"requests/s over {args.connections} connections; proxy 2 workers, {args.workers} queue "
        f"workers; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
        f"(queue workers on {sorted(stack.back)}, the rest on {sorted(stack.front)})"
    )
    print(f"{'phase':<14}{'requests':>10}{'p50 ms':>9}{'p99 ms':>9}{'queued at end':>15}")
    for phase in (empty, backlog):
        p50, p99 = percentiles(phase.samples)
        left = f"{min(phase.left)}-{max(phase.left)}"
        print(f"{phase.name:<14}{len(phase.samples):>10}{p50:>9.2f}{p99:>9.2f}{left:>15}")
    ratio = percentiles(backlog.samples)[0] / percentiles(empty.samples)[0]
    print(f"backlog/empty ratio of p50s: {ratio:.2f} (target below 1.20)")
    rate = statistics.mean(backlog.worked) / args.seconds
    print(f"backlog: {args.backlog} jobs x {BACKLOG_ROWS} rows per round, worked at {rate:.0f}/s")


def run(args: argparse.Namespace, stack: Stack) -> None:
    """Warm up, measure every round, print the table."""
    measure(stack.base, 1.0, args.connections, args.rate)
    empty, backlog = Phase("empty queue"), Phase("backlog")
    for _ in range(args.rounds):
        run_round(args, stack, empty, backlog)
    report(args, stack, empty, backlog)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both phases")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each phase")
    parser.add_argument("--rate", type=float, default=400.0, help="requests/s while measuring")
    parser.add_argument("--connections", type=int, default=4, help="concurrent clients")
    parser.add_argument("--backlog", type=int, default=2000, help="slow jobs queued for phase 2")
    parser.add_argument("--workers", type=int, default=2, help="queue worker processes")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Generate, start, measure, stop."""
    args = parse_args(argv)
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        raise SystemExit("redis-server and redis-cli are required (apt-get install redis-server)")
    with tempfile.TemporaryDirectory(prefix="bench-sync-async-") as scratch:
        folder = Path(scratch)
        project = build(pattern="sync-async", name=NAME, output_dir=folder).target
        with started(project, service_python(project), folder, args.workers) as stack:
            run(args, stack)
    return 0


if __name__ == "__main__":
    sys.exit(main())
