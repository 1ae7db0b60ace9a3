"""Horizontal-microservice benchmark: the proxy's latency against its slowest backend's.

    python bench/horizontal.py [--rounds 3] [--requests 500]

Generates the horizontal-microservice project and starts its three backends (run.sh, 1 worker
each, their own models) and the proxy (run-proxy.sh, 1 worker) on 127.0.0.1. In alternating
rounds it sends the sample row to each backend directly and to the proxy, one request at a time
on a kept-alive connection, and records the latencies. The proxy's overhead is its p50 less the
slowest backend's p50 (each a median over the rounds): what fanning out and merging add to the
wait for the slowest model. The virtualenv goes under .bench/.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))

from data_cache import WORK, machine, percentile, service_python  # noqa: E402 - bench/ on sys.path
from prep_pred import start  # noqa: E402 - bench/ on sys.path

from builder_core import build  # noqa: E402 - needs the checkout on sys.path

PATTERN = "horizontal-microservice"


def latencies(port: int, body: bytes, count: int) -> list[float]:
    """``count`` POST /predict one after another on one connection; each in ms."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    found: list[float] = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            connection.request("POST", "/predict", body, {"content-type": "application/json"})
            response = connection.getresponse()
            answer = json.loads(response.read())
            found.append((time.perf_counter() - started) * 1000)
            if response.status != 200 or answer.get("missing"):
                raise SystemExit(f"port {port}: HTTP {response.status}: {answer}")
    finally:
        connection.close()
    return found


def servers(stack: ExitStack, project: Path, python: Path) -> dict[str, int]:
    """Every backend and the proxy, running: their names and ports."""
    ports: dict[str, int] = {}
    for model in sorted((project / "models" / "backends").glob("*.onnx")):
        env = {"WORKERS": "1", "MODEL_FILEPATH": f"models/backends/{model.name}"}
        ports[model.stem] = start(stack, project, python, ["./run.sh"], env)
    urls = ",".join(f"{name}=http://127.0.0.1:{port}" for name, port in ports.items())
    env = {"WORKERS": "1", "BACKEND_URLS": urls}
    ports["proxy"] = start(stack, project, python, ["./run-proxy.sh"], env)
    return ports


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=WORK))
    project = build(pattern=PATTERN, name="bench-horizontal", output_dir=scratch).target
    python = service_python(project, "venv-horizontal")
    body = json.dumps({"data": [[5.9, 2.8, 4.3, 1.3]]}).encode()
    p50s: dict[str, list[float]] = {}
    p99s: dict[str, list[float]] = {}
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, scratch, True)
        ports = servers(stack, project, python)
        for port in ports.values():
            latencies(port, body, 50)  # warm-up: imports, first connections
        for _ in range(args.rounds):
            for name, port in ports.items():
                measured = latencies(port, body, args.requests)
                p50s.setdefault(name, []).append(percentile(measured, 0.5))
                p99s.setdefault(name, []).append(percentile(measured, 0.99))
    print(
        f"horizontal-microservice: {args.requests} sequential 1-row requests x {args.rounds} "
        f"alternating rounds, 1 worker each; {machine()}"
    )
    print(f"{'target':12} {'p50 ms':>7} {'p99 ms':>7}")
    medians = {name: statistics.median(values) for name, values in p50s.items()}
    for name in p50s:
        print(f"{name:12} {medians[name]:7.2f} {statistics.median(p99s[name]):7.2f}")
    slowest = max(value for name, value in medians.items() if name != "proxy")
    print(f"proxy overhead at p50 over the slowest backend: {medians['proxy'] - slowest:.2f} ms")


if __name__ == "__main__":
    main()
