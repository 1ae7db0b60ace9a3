"""Where a worker's time goes under load: py-spy against the generated service and the bare app.

    python bench/profile_serving.py [--seconds 10] [--rows 1] [--top 25]

Starts the generated web-single service (run.sh, 2 workers, defaults as generated) and the bare
ASGI app (bench/bare_asgi.py) in turn, loads each with wrk (-t1 -c16, keep-alive) and samples one
of its workers with py-spy (``record --format raw --idle``, 500 samples a second, native frames
left out) for the same seconds. Prints, for each server, the share of the samples in which each
function is on the stack (inclusive) and at the top of it (self), the largest first, and the
share of each part of the request path (the service's own modules, the server, the framework,
the event loop), each sample counted for the innermost frame of a known part: what each part
costs, measured on the running worker rather than in a loop.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from serving import (
    TYPICAL,
    WORK,
    Server,
    bare_server,
    ensure_wrk,
    generated_server,
    run,
    start,
    stop,
    venv,
)

WRK_BODY = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = io.open(os.getenv("BENCH_BODY"), "rb")
wrk.body = file:read("*a")
file:close()
"""
# The parts of a request's path in the generated service, by the module a frame is in.
GROUPS = {
    "src/app/observe.py": "request ID, metrics tally, request log (observe.py)",
    "src/app/fast.py": "fast path: routing and validation (fast.py)",
    "src/app/limits.py": "limits: body size and budget (limits.py)",
    "src/app/deps.py": "inference call, timing, JSON answer (deps.py)",
    "src/ml/classifier.py": "model: feeds and scores (classifier.py)",
    "src/http_guard.py": "header and body timeouts (http_guard.py)",
    "pydantic": "pydantic validation",
    "onnxruntime": "ONNX Runtime (Python side and the run call)",
    "uvicorn/protocols": "uvicorn's HTTP protocol (parsing, writing the answer)",
    "uvicorn/middleware": "uvicorn's proxy headers middleware",
    "starlette": "Starlette and FastAPI",
    "fastapi": "Starlette and FastAPI",
    "bare_asgi.py": "the bare app (body, JSON, inference, answer)",
    "Runner.run": "the event loop itself (uvloop: socket I/O, timers, idle)",
}


# A frame every sample of the worker's event loop thread holds.
EVENT_LOOP = "asyncio_run"


def workers_of(master: int) -> list[int]:
    """The pids of the processes ``master`` started (gunicorn's workers)."""
    listed = subprocess.run(
        ["pgrep", "-P", str(master)], capture_output=True, text=True, check=False
    ).stdout
    children = [int(pid) for pid in listed.split()]
    grandchildren = [pid for child in children for pid in workers_of(child)]
    return grandchildren or children


def profile(server: Server, pyspy: Path, wrk: str, rows: int, seconds: int) -> Path:
    """Load ``server`` and sample one of its workers; the folded stacks py-spy wrote."""
    process, _ = start(server)
    folded = Path(tempfile.mkdtemp(dir=WORK)) / "stacks.txt"
    body = WORK / "profile-body.json"
    body.write_bytes(server.body((TYPICAL * 22)[:rows]))
    script = WORK / "profile.lua"
    script.write_text(WRK_BODY)
    try:
        time.sleep(1)
        worker = workers_of(process.pid)[0]
        load = subprocess.Popen(
            [wrk, "-t1", "-c16", f"-d{seconds + 4}s", "-s", str(script), server.predict_url],
            env={"BENCH_BODY": str(body), "PATH": "/usr/bin:/bin"},
            stdout=subprocess.DEVNULL,
        )
        time.sleep(2)
        sampling = ["--rate", "500", "--format", "raw", "--idle", "--output", str(folded)]
        run(
            [str(pyspy), "record", "--pid", str(worker), "--duration", str(seconds), *sampling],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        load.wait()
    finally:
        stop(process)
    return folded


def frames(line: str) -> tuple[list[str], int]:
    """The frames of one folded stack line (outermost first) and its sample count."""
    stack, _, count = line.rpartition(" ")
    return stack.split(";"), int(count)


def summarise(folded: Path, top: int) -> None:
    """Print the functions and groups with the largest shares of the samples."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    groups: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, count = frames(line)
        if not any(EVENT_LOOP in frame for frame in stack):
            # Another thread of the worker (gRPC's poller, say), blocked most of the time.
            continue
        total += count
        for frame in set(stack):
            inclusive[frame] += count
        own[stack[-1]] += count
        # The innermost frame of a known part: where the time was spent, not what wrapped it.
        part = next(
            (group for frame in reversed(stack) for key, group in GROUPS.items() if key in frame),
            "other",
        )
        groups[part] += count
    print(f"{total} samples of the event loop's thread\n")
    print("| function (file:line) | inclusive | self |\n|---|---|---|")
    for frame, count in inclusive.most_common(top):
        print(f"| `{frame}` | {100 * count / total:.1f}% | {100 * own[frame] / total:.1f}% |")
    print("\n| part of the path (innermost frame in) | share of samples |\n|---|---|")
    for group, count in groups.most_common():
        print(f"| {group} | {100 * count / total:.1f}% |")


def main() -> None:
    """Profile the generated service, then the bare app, under the same load."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    wrk = ensure_wrk()
    pyspy = venv("pyspy", ["py-spy"]).parent / "py-spy"
    generated = generated_server(18321)
    python = Path(generated.env["PATH"].split(":")[0]) / "python"
    for server in (generated, bare_server(18322, python)):
        print(f"\n## {server.name}, {args.rows} row(s), wrk -t1 -c16\n", flush=True)
        print(f"profiling {server.name}", file=sys.stderr)
        summarise(profile(server, pyspy, wrk, args.rows, args.seconds), args.top)


if __name__ == "__main__":
    main()
