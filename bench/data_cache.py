"""Data-cache benchmark: latency of cache misses against cache hits over the sample data store.

    python bench/data_cache.py [--rounds 3] [--connections 1]

Generates the data-cache service, starts a redis-server and the service (its own run.sh, two
workers) on 127.0.0.1, then in every round: empties Redis, asks for every item of the store once
(each a miss: load, preprocess, predict, cache in the background), waits until Redis holds every
item, and asks for every item again (each a hit). Prints p50 and p99 of both and the hit/miss ratio
of the p50s, then the same split measured inside one process (store read + preprocessing against
Redis GET + decode), which is the work a hit saves. Bounded: 2 x items x rounds requests. The
virtualenv goes under .bench/.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing
from pathlib import Path

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
sys.path.insert(0, str(REPO))

from builder_core import build  # noqa: E402 - needs the checkout on sys.path

WORK = REPO / ".bench"
WORKERS = "2"
# Runs inside the service's virtualenv: the per-item work with and without the cache, no HTTP.
IN_PROCESS = """
import statistics, sys, time
from redis import Redis
from src.app import config
from src.app.config import Settings
from src.data.cache import decode_tensor, encode_tensor
from src.data.store import DataStore
from src.ml.preprocess import preprocess, tensor_shape

settings = Settings.from_env()
store = DataStore(settings.data_uri, settings.max_item_bytes)
client = Redis.from_url(settings.redis_url)
shape = tensor_shape(config.IMAGE_SIDE)
passes = []
for _ in range(5):
    load, hit = [], []
    for data_id in store.ids():
        started = time.perf_counter()
        tensor = preprocess(store.read(data_id), config.IMAGE_SIDE)
        load.append(time.perf_counter() - started)
        client.set("bench:" + data_id, encode_tensor(tensor))
        started = time.perf_counter()
        decode_tensor(client.get("bench:" + data_id), shape)
        hit.append(time.perf_counter() - started)
    passes.append((statistics.median(load), statistics.median(hit)))
# The quietest pass: other processes on the machine only ever add time.
print(min(p[0] for p in passes) * 1e6, min(p[1] for p in passes) * 1e6)
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, seconds: float = 60) -> None:
    """Return once something accepts connections on ``port``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with closing(socket.socket()) as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listened on port {port} within {seconds} s")


def service_python(project: Path, venv_name: str = "venv-data-cache") -> Path:
    """A virtualenv under .bench/ with the project's pinned requirements."""
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit("uv is required (pip install uv)")
    venv = WORK / venv_name
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    requirements = str(project / "requirements.txt")
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(python), "-r", requirements], check=True
    )
    return python


def redis_command(port: int, *args: str) -> str:
    """One Redis command through redis-cli."""
    result = subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def request(connection: http.client.HTTPConnection, data_id: str) -> tuple[float, str]:
    """POST /predict for ``data_id`` on a kept-alive connection; seconds taken and cache outcome."""
    body = json.dumps({"data": data_id})
    started = time.perf_counter()
    connection.request("POST", "/predict", body, {"content-type": "application/json"})
    response = connection.getresponse()
    answer = json.loads(response.read())
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise SystemExit(f"{data_id}: HTTP {response.status}: {answer}")
    return elapsed, str(answer["cache"])


def phase(port: int, ids: list[str], connections: int, expected: str) -> list[float]:
    """Ask for every item once over ``connections`` connections; every latency, in ms."""
    shards = [ids[index::connections] for index in range(connections)]

    def run(shard: list[str]) -> list[float]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            results = [request(connection, data_id) for data_id in shard]
        finally:
            connection.close()
        wrong = [outcome for _, outcome in results if outcome != expected]
        if wrong:
            raise SystemExit(f"expected every answer to be a {expected}, got {set(wrong)}")
        return [seconds * 1000 for seconds, _ in results]

    with ThreadPoolExecutor(connections) as pool:
        return [latency for shard in pool.map(run, shards) for latency in shard]


def wait_cached(redis_port: int, count: int, seconds: float = 10) -> None:
    """Wait until the background writes of the miss phase are all in Redis."""
    deadline = time.monotonic() + seconds
    while int(redis_command(redis_port, "DBSIZE")) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"Redis did not reach {count} keys within {seconds} s")
        time.sleep(0.05)


def machine() -> str:
    """The CPU model and count, for the record."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [
        line.split(":", 1)[1].strip()
        for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
        if line.startswith("model name")
    ]
    return f"{names[0] if names else platform.machine()}, {os.cpu_count()} CPUs"


def percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile (0..1) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then wait for the exit."""
    process.terminate()
    process.wait(30)


def start_servers(stack: ExitStack, project: Path, python: Path) -> tuple[int, int]:
    """Start redis-server and the service; their ports. Both are stopped when ``stack`` closes."""
    redis_port, port = free_port(), free_port()
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    command = ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(folder)]
    command += ["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"]
    redis = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    stack.callback(stop, redis)
    wait_port(redis_port)
    env = {
        **os.environ,
        "PATH": f"{python.parent}:{os.environ['PATH']}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKERS": WORKERS,
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "LOG_LEVEL": "warning",  # two info lines per request would measure the log, too
    }
    log = (folder / "service.log").open("wb")
    stack.callback(log.close)
    service = subprocess.Popen([str(project / "run.sh")], env=env, stdout=log, stderr=log)
    stack.callback(stop, service)
    wait_port(port)
    return redis_port, port


def in_process(project: Path, python: Path, redis_port: int) -> tuple[float, float]:
    """Median µs of store read + preprocessing, and of Redis GET + decode, in one process."""
    env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{redis_port}/1"}
    result = subprocess.run(
        [str(python), "-c", IN_PROCESS], cwd=project, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    load, hit = (float(word) for word in result.stdout.split())
    return load, hit


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=1)
    args = parser.parse_args()
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is required (apt-get install redis-server)")
    WORK.mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=WORK))
    project = build(pattern="data-cache", name="bench-data-cache", output_dir=scratch).target
    python = service_python(project)
    ids = sorted(path.name for path in (project / "data").iterdir())
    misses: list[float] = []
    hits: list[float] = []
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, scratch, True)
        redis_port, port = start_servers(stack, project, python)
        phase(port, ids[:20], args.connections, "miss")  # warm-up: imports, first connections
        for _ in range(args.rounds):
            redis_command(redis_port, "FLUSHDB")
            misses += phase(port, ids, args.connections, "miss")
            wait_cached(redis_port, len(ids))
            hits += phase(port, ids, args.connections, "hit")
        load_us, hit_us = in_process(project, python, redis_port)
    report(args, len(ids), misses, hits, (load_us, hit_us))


def report(
    args: argparse.Namespace,
    items: int,
    misses: list[float],
    hits: list[float],
    in_proc: tuple[float, float],
) -> None:
    """Print what was measured."""
    print(
        f"data-cache: {items} items x {args.rounds} rounds, {args.connections} connection(s), "
        f"{WORKERS} workers; {machine()}"
    )
    print(f"{'':8} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for name, values in (("miss", misses), ("hit", hits)):
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        print(f"{name:8} {len(values):8d} {p50:8.2f} {p99:8.2f}")
    ratio = percentile(hits, 0.5) / percentile(misses, 0.5)
    print(f"hit/miss ratio of p50s: {ratio:.2f}")
    load_us, hit_us = in_proc
    print(
        f"in process, per item: store read + preprocessing {load_us:.0f} µs, "
        f"Redis GET + decode {hit_us:.0f} µs"
    )


if __name__ == "__main__":
    main()
