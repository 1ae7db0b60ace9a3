"""Adaptive batching benchmark: batching off and on, and MLServer's, where inference dominates.

    python bench/batching.py [--model mlp|forest] [--rounds 3] [--seconds 5] [--skip-mlserver]

Trains the model with ``scripts/train_bench_models.py`` (the MLP: a few ms for one row alone,
far less per row in a batch of 64; or the 300-tree forest), generates web-single serving it and
starts it twice by its own run.sh (2 workers each): batching off, and on with BATCH_MAX_SIZE=64
and BATCH_MAX_DELAY_MS=5; and MLServer 1.7 with its scikit-learn runtime on the same fitted model,
with its adaptive batching at the same limits (``max_batch_size`` 64, ``max_batch_time`` 5 ms,
2 parallel workers). wrk sends 1-row requests at concurrency 1, 16 and 64, the servers
alternating in every round; the table has the medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from serving import (
    MLSERVER,
    REPO,
    WORK,
    WORKERS,
    Measurement,
    Server,
    ensure_wrk,
    load,
    mlserver_settings,
    run,
    start,
    stop,
    v2_body,
    venv,
)

CONCURRENCY = (1, 16, 64)
MAX_BATCH_SIZE = 64
MAX_DELAY_MS = 5.0
BENCH = WORK / "batching"


def train(kind: str) -> Path:
    """The model's folder: model.onnx, label.json, model.joblib (trained once)."""
    model_dir = BENCH / "models" / kind
    if not (model_dir / "model.joblib").exists():
        python = venv("train", ["-r", str(REPO / "scripts" / "requirements-train.txt")])
        script = REPO / "scripts" / "train_bench_models.py"
        run([str(python), str(script), kind, str(model_dir.parent)], stdout=subprocess.DEVNULL)
    return model_dir


def generated(model_dir: Path, port: int, batching: bool) -> Server:
    """The web-single service serving the model, by its run.sh; batching off or on."""
    name = f"bench-{model_dir.name}"
    out = BENCH / "generated"
    files = ["--model", str(model_dir / "model.onnx"), "--labels", str(model_dir / "label.json")]
    command = [sys.executable, "-m", "builder", "--output-dir", str(out), "--name", name]
    # Anew every run (the template may have changed), from a folder with no vars.yaml: the model
    # describes itself.
    run(command + files + ["--force"], cwd=BENCH, stdout=subprocess.DEVNULL)
    project = out / name
    python = venv("service", ["-r", str(project / "requirements.txt")])
    env = {
        "PATH": f"{python.parent}:{Path('/usr/bin')}:{Path('/bin')}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKERS": str(WORKERS),
        "BATCH_MAX_SIZE": str(MAX_BATCH_SIZE if batching else 0),
        "BATCH_MAX_DELAY_MS": str(MAX_DELAY_MS),
    }
    url = f"http://127.0.0.1:{port}"
    label = "batching on" if batching else "batching off"
    return Server(
        label, [str(project / "run.sh")], project, env, f"{url}/ready", f"{url}/predict", rows_body
    )


def mlserver(model_dir: Path, port: int) -> Server:
    """MLServer's scikit-learn runtime on the same fitted model, adaptive batching on."""
    python = venv("mlserver", MLSERVER)
    models = BENCH / "mlserver-model"
    (models / "model").mkdir(parents=True, exist_ok=True)
    (models / "model" / "model.joblib").write_bytes((model_dir / "model.joblib").read_bytes())
    settings = mlserver_settings(port)
    (models / "settings.json").write_text(json.dumps(settings))
    model = {
        "name": "model",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"},
        "max_batch_size": MAX_BATCH_SIZE,
        "max_batch_time": MAX_DELAY_MS / 1000,
    }
    (models / "model" / "model-settings.json").write_text(json.dumps(model))
    url = f"http://127.0.0.1:{port}/v2/models/model"
    command = [str(python.parent / "mlserver"), "start", str(models)]
    return Server(
        "MLServer 1.7 batching",
        command,
        models,
        {"PATH": "/usr/bin:/bin"},
        f"{url}/ready",
        f"{url}/infer",
        v2_fp64_body,
    )


def rows_body(rows: list[list[float]]) -> bytes:
    """The generated service's request for ``rows``."""
    return json.dumps({"data": rows}).encode()


def v2_fp64_body(rows: list[list[float]]) -> bytes:
    """MLServer's V2 request for ``rows``: float64, as the scikit-learn model was trained."""
    return v2_body(rows, "FP64")


def measure(server: Server, wrk: str, seconds: int) -> dict[int, Measurement]:
    """Start, warm up, load at every concurrency, stop."""
    process, _ = start(server)
    row = [[0.5] * 20]
    try:
        load(wrk, server.predict_url, server.body(row), 2, 16)
        return {c: load(wrk, server.predict_url, server.body(row), seconds, c) for c in CONCURRENCY}
    finally:
        stop(process)


def main() -> None:
    """Measure in alternating rounds, then report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("mlp", "forest"), default="mlp")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--skip-mlserver", action="store_true")
    args = parser.parse_args()
    wrk = ensure_wrk()
    model_dir = train(args.model)
    servers = [generated(model_dir, 8801, False), generated(model_dir, 8802, True)]
    if not args.skip_mlserver:
        servers.append(mlserver(model_dir, 8803))
    measured: dict[str, list[dict[int, Measurement]]] = {server.name: [] for server in servers}
    for _ in range(args.rounds):
        for server in servers:
            measured[server.name].append(measure(server, wrk, args.seconds))
    report(args, servers, measured)


def report(
    args: argparse.Namespace,
    servers: list[Server],
    measured: dict[str, list[dict[int, Measurement]]],
) -> None:
    """Medians per server and concurrency, and the ratios the targets are about."""
    print(
        f"batching: {args.model}, 1-row requests, wrk 1 thread, {args.seconds} s x {args.rounds} "
        f"alternating rounds, {WORKERS} workers each; max batch {MAX_BATCH_SIZE}, "
        f"max delay {MAX_DELAY_MS} ms"
    )
    print("| server | concurrency | req/s | p50 ms | p99 ms | non-2xx |")
    print("|---|---|---|---|---|---|")
    medians: dict[tuple[str, int], tuple[float, float]] = {}
    for server in servers:
        for c in CONCURRENCY:
            runs = [rounds[c] for rounds in measured[server.name]]
            rps = statistics.median(m.rps for m in runs)
            p50 = statistics.median(m.p50_ms for m in runs)
            medians[server.name, c] = (rps, p50)
            print(
                f"| {server.name} | {c} | {rps:,.0f} | {p50:.2f} "
                f"| {statistics.median(m.p99_ms for m in runs):.2f} "
                f"| {sum(m.non_2xx for m in runs)} |"
            )
    on, off = medians["batching on", 64][0], medians["batching off", 64][0]
    print(f"concurrency 64: batching on / off = {on / off:.2f} (target 3)")
    if not args.skip_mlserver:
        theirs = medians["MLServer 1.7 batching", 64][0]
        print(f"concurrency 64: batching on / MLServer = {on / theirs:.2f} (target above 1)")
    rise = medians["batching on", 1][1] - medians["batching off", 1][1]
    print(f"concurrency 1: p50 rise {rise:.2f} ms (target at most {MAX_DELAY_MS + 1:.0f} ms)")


if __name__ == "__main__":
    main()
