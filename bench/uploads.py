"""Many large uploads at once: the worker's body budget keeps a pod under its memory limit.

    python bench/uploads.py [--uploads 300] [--pattern web-single]

Generates the pattern and starts it twice on 127.0.0.1 as the soak does (its own run.sh, two
workers): once as generated (MAX_BODY_BYTES_IN_FLIGHT, 64 MiB per worker) and once with the
budget out of the way (MAX_BODY_BYTES_IN_FLIGHT=1 TiB, i.e. how the service behaved before it had
one). Each time it opens ``--uploads`` connections and on each sends a valid request of
``max_rows`` rows padded with spaces to just under ``max_body_bytes``, all but its last byte, so
that every upload is in flight at once. Then it reads the RSS of the server's process tree
(held), times ``GET /health``, sends the last bytes, collects the answers and reads the RSS
again (after); a sampler keeps the peak. Exit status 1 if, with the budget, the peak reaches the
memory limit the manifests give the container, or an answer is neither 200 nor 503.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "tests"))

from live import call, running  # noqa: E402 - needs tests/ on sys.path
from soak import MIB, WORK, machine, memory_limit, sample, service_python, tree_rss  # noqa: E402

from builder_core import build, pattern_names  # noqa: E402 - the checkout is on sys.path
from builder_core.patterns import load_pattern  # noqa: E402

UNBOUNDED = str(2**40)


@dataclass
class Outcome:
    """What one start of the service saw (RSS in MiB)."""

    budget: str
    idle: float
    held: float
    peak: float
    after: float
    health_ms: float
    statuses: Counter[str]


def padded_body(base: str, max_rows: int, cap: int) -> bytes:
    """A valid request of ``max_rows`` rows, padded with spaces to one byte under ``cap``."""
    row = call(f"{base}/metadata")[1]["data_sample"][0]
    body = json.dumps({"data": [row] * max_rows}).encode()
    if len(body) >= cap:
        raise SystemExit(f"{max_rows} rows are {len(body)} bytes, over the cap {cap}")
    return body[:-1] + b" " * (cap - 1 - len(body)) + b"}"


def open_uploads(base: str, body: bytes, count: int) -> list[socket.socket]:
    """``count`` connections, each with a POST of ``body`` sent but for its last byte."""
    host, port = base.removeprefix("http://").split(":")
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sockets: list[socket.socket] = []
    for _ in range(count):
        connection = socket.create_connection((host, int(port)), timeout=60)
        # An upload answered 503 is closed before all of it is sent.
        with contextlib.suppress(OSError):
            connection.sendall(head + body[:-1])
        sockets.append(connection)
    return sockets


def finish(connection: socket.socket, last: bytes) -> str:
    """Send the last byte; the status of the answer (or what went wrong)."""
    try:
        # Already answered and closed: the answer is still there to read.
        with contextlib.suppress(OSError):
            connection.sendall(last)
        response = http.client.HTTPResponse(connection)
        response.begin()
        response.read()
        return str(response.status)
    except (OSError, http.client.HTTPException) as err:
        return type(err).__name__
    finally:
        connection.close()


def health_ms(base: str) -> float:
    """How long one GET /health takes, in ms."""
    started = time.monotonic()
    status, _ = call(f"{base}/health", timeout=30)
    if status != 200:
        raise SystemExit(f"/health answered {status}")
    return (time.monotonic() - started) * 1000


def one_run(pattern: str, uploads: int, budget: str | None) -> tuple[Outcome, float]:
    """Start the service (with ``budget`` if given), hold the uploads, then finish them."""
    folder = Path(tempfile.mkdtemp(dir=WORK, prefix=f"uploads-{pattern}-"))
    try:
        result = build(pattern=pattern, name=f"uploads-{pattern}", output_dir=folder)
        project, cap = result.target, result.variables.max_body_bytes
        info = load_pattern(pattern).info
        env = {} if budget is None else {"MAX_BODY_BYTES_IN_FLIGHT": budget}
        with running(project, service_python(project), info, folder, env) as stack:
            metadata = call(f"{stack.base}/metadata")[1]
            body = padded_body(stack.base, int(metadata["max_rows"]), cap)
            pid = stack.server.pid
            time.sleep(1)
            idle = tree_rss(pid) / MIB
            stop, samples = threading.Event(), list[tuple[float, int]]()
            sampler = threading.Thread(target=sample, args=(pid, stop, samples))
            sampler.start()
            sockets = open_uploads(stack.base, body, uploads)
            time.sleep(2)
            held, health = tree_rss(pid) / MIB, health_ms(stack.base)
            statuses = Counter(finish(connection, body[-1:]) for connection in sockets)
            time.sleep(2)
            after = tree_rss(pid) / MIB
            stop.set()
            sampler.join()
        peak = max(rss for _, rss in samples) / MIB
        label = "as generated (64 MiB)" if budget is None else "unbounded"
        outcome = Outcome(label, idle, held, peak, after, health, statuses)
        return outcome, memory_limit(project)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    """Both runs, one table; exit 1 if the generated service missed a target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--uploads", type=int, default=300)
    parser.add_argument("--pattern", default="web-single", choices=pattern_names())
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    print(
        f"uploads: {args.uploads} held at once, {args.pattern}, 2 server workers; {machine()}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    print("| budget per worker | RSS idle | held | peak | after | limit | /health ms | answers |")
    print("|---|---|---|---|---|---|---|---|")
    failed = False
    for budget in (None, UNBOUNDED):
        outcome, limit = one_run(args.pattern, args.uploads, budget)
        answers = ", ".join(f"{status}: {n}" for status, n in sorted(outcome.statuses.items()))
        print(
            f"| {outcome.budget} | {outcome.idle:.0f} | {outcome.held:.0f} | {outcome.peak:.0f} "
            f"| {outcome.after:.0f} | {limit:.0f} | {outcome.health_ms:.1f} | {answers} |",
            flush=True,
        )
        if budget is None:
            failed = outcome.peak >= limit or set(outcome.statuses) - {"200", "503"} != set()
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
