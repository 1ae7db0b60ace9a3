"""Prediction-cache benchmark: latency of answers from the model (misses) against from Redis (hits).

    python bench/prediction_cache.py [--rounds 3] [--requests 200] [--rows 1 200 400]

Generates the prediction-cache service (its sample model is a 300-tree random forest), starts a
redis-server and the service (its own run.sh, two workers) on 127.0.0.1, then for every request
size and in every round: empties Redis, sends REQUESTS distinct requests of that many random rows
once each (each a miss: validation, inference, the answer written to Redis in the background),
waits until Redis holds every answer, and sends the same requests again (each a hit). Prints p50
and p99 of both, the miss/hit ratio of the p50s, and what inference cost per request in the
service (its own model_inference_duration_seconds over the miss phases); then what one Redis GET
costs the service's client in one process, without HTTP. One connection, kept alive. Bounded:
2 x requests x rounds x sizes requests. The virtualenv goes under .bench/.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))

from data_cache import (  # noqa: E402 - needs bench/ on sys.path
    WORK,
    WORKERS,
    machine,
    percentile,
    redis_command,
    service_python,
    start_servers,
    wait_cached,
)

from builder_core import build  # noqa: E402 - needs the checkout on sys.path

# Runs inside the service's virtualenv: what one Redis GET costs the service's own client (redis-py
# asyncio), for a small answer and for a 200-row one, without HTTP. The quietest of 5 passes.
REDIS_GET = """
import asyncio, sys, time
from redis.asyncio import Redis

async def main():
    client = Redis.from_url(sys.argv[1])
    best = {}
    for size in (60, 12000):
        await client.set("bench:get", b"x" * size)
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(1000):
                await client.get("bench:get")
            took = (time.perf_counter() - started) / 1000 * 1e6
            best[size] = min(best.get(size, took), took)
    await client.aclose()
    print(best[60], best[12000])

asyncio.run(main())
"""
# The iris measurements' ranges: rows the forest might really be asked about.
LOW, HIGH = (4.3, 2.0, 1.0, 0.1), (7.9, 4.4, 6.9, 2.5)


def bodies(count: int, rows: int, seed: int) -> list[bytes]:
    """``count`` distinct request bodies of ``rows`` random rows each."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test rows, not secrets

    def row() -> list[float]:
        return [round(rng.uniform(low, high), 2) for low, high in zip(LOW, HIGH, strict=True)]

    return [json.dumps({"data": [row() for _ in range(rows)]}).encode() for _ in range(count)]


def phase(port: int, requests: list[bytes], expected: str) -> list[float]:
    """Send every body once on one kept-alive connection; every latency, in ms."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies: list[float] = []
    try:
        for body in requests:
            started = time.perf_counter()
            connection.request("POST", "/predict", body, {"content-type": "application/json"})
            response = connection.getresponse()
            answer = response.read()
            latencies.append((time.perf_counter() - started) * 1000)
            outcome = response.headers.get("cache")
            if response.status != 200 or outcome != expected:
                raise SystemExit(f"expected a 200 {expected}, got {response.status} {outcome}")
            json.loads(answer)
    finally:
        connection.close()
    return latencies


def inference_totals(port: int) -> tuple[float, float]:
    """The service's model_inference_duration_seconds: its sum and count so far."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    found = {"sum": 0.0, "count": 0.0}
    for line in lines:
        for what in found:
            if line.startswith(f"model_inference_duration_seconds_{what} "):
                found[what] = float(line.split()[-1])
    return found["sum"], found["count"]


def measure(
    redis_port: int, port: int, rows: int, args: argparse.Namespace
) -> tuple[list[float], list[float], float]:
    """Misses, hits (ms) and the mean inference ms per miss, for requests of ``rows`` rows."""
    misses: list[float] = []
    hits: list[float] = []
    inference = 0.0
    for round_number in range(args.rounds):
        requests = bodies(args.requests, rows, seed=rows * 1000 + round_number)
        redis_command(redis_port, "FLUSHDB")
        before = inference_totals(port)
        misses += phase(port, requests, "miss")
        after = inference_totals(port)
        inference += (after[0] - before[0]) / max(after[1] - before[1], 1) * 1000
        wait_cached(redis_port, len(requests))
        hits += phase(port, requests, "hit")
    return misses, hits, inference / args.rounds


def redis_get_us(python: Path, redis_port: int) -> tuple[float, float]:
    """µs per redis-py asyncio GET: of a 60-byte value, and of 12 kB (a 200-row answer)."""
    url = f"redis://127.0.0.1:{redis_port}/1"
    result = subprocess.run(
        [str(python), "-c", REDIS_GET, url], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    small, large = (float(word) for word in result.stdout.split())
    return small, large


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 200, 400])
    args = parser.parse_args()
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is required (apt-get install redis-server)")
    WORK.mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=WORK))
    project = build(pattern="prediction-cache", name="bench-cache", output_dir=scratch).target
    python = service_python(project, "venv-prediction-cache")
    print(
        f"prediction-cache: {args.requests} requests x {args.rounds} rounds per size, "
        f"1 connection, {WORKERS} workers, 300-tree forest; {machine()}"
    )
    print(
        f"{'rows':>5} {'inference ms':>12} {'miss p50':>9} {'miss p99':>9} {'hit p50':>8} "
        f"{'hit p99':>8} {'miss/hit':>8}"
    )
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, scratch, True)
        redis_port, port = start_servers(stack, project, python)
        phase(port, bodies(20, 1, seed=-1), "miss")  # warm-up: imports, first connections
        for rows in args.rows:
            misses, hits, inference = measure(redis_port, port, rows, args)
            miss_p50, hit_p50 = percentile(misses, 0.5), percentile(hits, 0.5)
            print(
                f"{rows:5d} {inference:12.2f} {miss_p50:9.2f} {percentile(misses, 0.99):9.2f} "
                f"{hit_p50:8.2f} {percentile(hits, 0.99):8.2f} {miss_p50 / hit_p50:7.1f}x"
            )
        small, large = redis_get_us(python, redis_port)
    print(f"in process, one redis-py asyncio GET: 60 B {small:.0f} µs, 12 kB {large:.0f} µs")


if __name__ == "__main__":
    main()
