"""Prep-pred benchmark: the two services against the same work in one process.

    python bench/prep_pred.py [--rounds 3] [--seconds 5] [--concurrency 1 8]

Generates the prep-pred project and, in alternating rounds on 127.0.0.1, serves uploads of its
sample images two ways, each with two gunicorn workers in all on this 2-core machine:

- **two services**: the prep service (run-prep.sh, 1 worker) asking the prediction service
  (run.sh, 1 worker) over V2 REST, as deployed;
- **one process**: the same prep service code (2 workers) with the model loaded in its own
  process: the prediction service's client replaced by a call of the classifier, no HTTP hop.

For every concurrency, each round sends uploads for ``--seconds`` over kept-alive connections and
records requests/s and latency; the table gives the medians over the rounds. The virtualenv goes
under .bench/.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))

from data_cache import (  # noqa: E402 - needs bench/ on sys.path
    WORK,
    free_port,
    machine,
    percentile,
    service_python,
    stop,
    wait_port,
)

from builder_core import build  # noqa: E402 - needs the checkout on sys.path

# Written into the generated project: the prep service with the model in its own process.
ONE_PROCESS = '''"""The prep service with the model in its own process (the one-process variant)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI

from src.app import config
from src.app.config import Settings
from src.ml.classifier import Classifier
from src.prep.main import create_app as create_prep


class InProcess:
    """What PredictionClient does, by calling the classifier here."""

    def __init__(self) -> None:
        settings = Settings.from_env()
        self.classifier = Classifier.load(
            settings.model_filepath, settings.label_filepath, config.OUTPUT_NAME, 1, config.TASK
        )

    async def scores(self, row: np.ndarray) -> list[float]:
        result: Any = self.classifier.predict([row.tolist()])
        return [float(value) for value in result[0]]

    async def labels(self) -> list[str]:
        return list(self.classifier.labels)

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        return None


def create_app() -> FastAPI:
    app = create_prep()
    original = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(served: FastAPI) -> AsyncIterator[Any]:
        async with original(served) as state:
            await served.state.client.close()
            served.state.client = InProcess()
            yield state

    app.router.lifespan_context = lifespan
    return app
'''


def start(
    stack: ExitStack, project: Path, python: Path, command: list[str], env: dict[str, str]
) -> int:
    """Start ``command`` in the project on a free port; the port. Stopped when ``stack`` closes."""
    port = free_port()
    full_env = {
        **os.environ,
        "PATH": f"{python.parent}:{os.environ['PATH']}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "warning",
        **env,
    }
    log = (project.parent / f"server-{port}.log").open("wb")
    stack.callback(log.close)
    process = subprocess.Popen(command, cwd=project, env=full_env, stdout=log, stderr=log)
    stack.callback(stop, process)
    wait_port(port)
    return port


def load(
    port: int, images: list[bytes], concurrency: int, seconds: float
) -> tuple[float, list[float]]:
    """Upload ``images`` round-robin from ``concurrency`` connections; req/s and latencies (ms)."""
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(offset: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        index = offset
        try:
            while time.perf_counter() < deadline:
                body = images[index % len(images)]
                index += 1
                started = time.perf_counter()
                connection.request("POST", "/predict/label", body, {"content-type": "image/png"})
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    raise SystemExit(f"HTTP {response.status} from port {port}")
                mine.append((time.perf_counter() - started) * 1000)
        finally:
            connection.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies) / (time.perf_counter() - started), latencies


def servers(stack: ExitStack, project: Path, python: Path) -> dict[str, int]:
    """Both variants running: their names and the port a client uploads to."""
    pred = start(stack, project, python, ["./run.sh"], {"WORKERS": "1"})
    prep = start(
        stack,
        project,
        python,
        ["./run-prep.sh"],
        {"WORKERS": "1", "PRED_URL": f"http://127.0.0.1:{pred}"},
    )
    (project / "bench_one_process.py").write_text(ONE_PROCESS)
    # Served as run.sh serves an app, with two workers; the shell puts in the port.
    gunicorn = (
        f"exec {python} -m gunicorn 'bench_one_process:create_app()' --workers 2"
        " --worker-class src.http_guard.Worker --config python:src.gunicorn_conf"
        ' --bind "127.0.0.1:$PORT"'
    )
    one = start(stack, project, python, ["sh", "-c", gunicorn], {})
    return {"two services": prep, "one process": one}


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=WORK))
    project = build(pattern="prep-pred", name="bench-prep-pred", output_dir=scratch).target
    python = service_python(project, "venv-prep-pred")
    images = [path.read_bytes() for path in sorted((project / "samples").glob("*.png"))]
    print(
        f"prep-pred: uploads of {len(images)} sample PNGs to POST /predict/label, "
        f"{args.rounds} alternating rounds of {args.seconds:g} s; {machine()}"
    )
    print(f"{'variant':14} {'conc':>4} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7}")
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, scratch, True)
        ports = servers(stack, project, python)
        for port in ports.values():
            load(port, images, 2, 1.0)  # warm-up: imports, first connections
        for concurrency in args.concurrency:
            rates: dict[str, list[float]] = {name: [] for name in ports}
            p50s: dict[str, list[float]] = {name: [] for name in ports}
            p99s: dict[str, list[float]] = {name: [] for name in ports}
            for _ in range(args.rounds):
                for name, port in ports.items():
                    rate, latencies = load(port, images, concurrency, args.seconds)
                    rates[name].append(rate)
                    p50s[name].append(percentile(latencies, 0.5))
                    p99s[name].append(percentile(latencies, 0.99))
            for name in ports:
                print(
                    f"{name:14} {concurrency:4d} {statistics.median(rates[name]):8.0f} "
                    f"{statistics.median(p50s[name]):7.2f} {statistics.median(p99s[name]):7.2f}"
                )


if __name__ == "__main__":
    main()
