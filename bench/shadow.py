"""Shadow-model benchmark: what running a shadow model costs the served model's answers.

    python bench/shadow.py [--rounds 3] [--seconds 5] [--connections 16]

Generates the web-single service and starts it twice on 127.0.0.1 (its own run.sh, two workers
each): once as it is, once with SHADOW_MODEL_FILEPATH set to its shadow test model (the served
model with its scores rotated on some rows, so the same cost per row). In alternating rounds
wrk loads one, then the other, with one-row POST /predict requests on kept-alive connections;
only one service is loaded at a time. Prints the median requests/s, p50 and p99 of each, the
ratio of requests/s (on/off), and what the shadowed service counted: rows compared, predictions
dropped because its queue was full. The virtualenv goes under .bench/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import urllib.request
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))

from data_cache import WORK, machine, service_python  # noqa: E402 - bench/ on sys.path
from prep_pred import start  # noqa: E402 - bench/ on sys.path
from serving import Measurement, ensure_wrk, load  # noqa: E402 - bench/ on sys.path

from builder_core import build  # noqa: E402 - needs the checkout on sys.path

BODY = json.dumps({"data": [[5.9, 2.8, 4.3, 1.3]]}).encode()
COUNTED = ("shadow_rows_compared_total", "shadow_predictions_dropped_total")


def counted(port: int) -> dict[str, float]:
    """The shadow's counters, as the service's /metrics adds them up across its workers."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        text = answer.read().decode()
    found = dict.fromkeys(COUNTED, 0.0)
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in found:
            found[name] = float(value)
    return found


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    wrk = ensure_wrk()
    WORK.mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=WORK))
    project = build(pattern="web-single", name="bench-shadow", output_dir=scratch).target
    python = service_python(project, "venv-shadow")
    shadow = str(project / "tests" / "data" / "shadow-model.onnx")
    measured: dict[str, list[Measurement]] = {"off": [], "on": []}
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, scratch, True)
        ports = {
            "off": start(stack, project, python, ["./run.sh"], {"WORKERS": "2"}),
            "on": start(
                stack,
                project,
                python,
                ["./run.sh"],
                {"WORKERS": "2", "SHADOW_MODEL_FILEPATH": shadow},
            ),
        }
        for port in ports.values():
            load(wrk, f"http://127.0.0.1:{port}/predict", BODY, 1, args.connections)  # warm-up
        for _ in range(args.rounds):
            for name, port in ports.items():
                url = f"http://127.0.0.1:{port}/predict"
                measured[name].append(load(wrk, url, BODY, args.seconds, args.connections))
        shadow_counts = counted(ports["on"])
    report(args, measured, shadow_counts)


def report(
    args: argparse.Namespace, measured: dict[str, list[Measurement]], counts: dict[str, float]
) -> None:
    """The table: medians over the rounds."""
    print(
        f"shadow model: web-single (iris SVC), 1-row POST /predict, wrk {args.connections} "
        f"connections, {args.seconds} s x {args.rounds} alternating rounds, 2 workers; {machine()}"
    )
    print(f"{'shadow':7} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>8}")
    rps = {}
    for name, runs in measured.items():
        rps[name] = statistics.median(run.rps for run in runs)
        p50 = statistics.median(run.p50_ms for run in runs)
        p99 = statistics.median(run.p99_ms for run in runs)
        bad = sum(run.non_2xx for run in runs)
        print(f"{name:7} {rps[name]:8.0f} {p50:7.2f} {p99:7.2f} {bad:8d}")
    print(f"req/s with the shadow on / off: {rps['on'] / rps['off']:.3f}")
    compared, dropped = (counts[name] for name in COUNTED)
    print(f"the shadowed service compared {compared:.0f} rows; {dropped:.0f} predictions dropped")


if __name__ == "__main__":
    main()
