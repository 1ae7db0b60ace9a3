"""Serving benchmark: the generated web-single service against what a user would pick instead.

    python bench/serving.py [--rounds 2] [--seconds 10] [--connections 16]

Serves the same iris model with (1) the generated web-single service started by its own run.sh,
(2) MLServer with its scikit-learn runtime (V2 REST infer), (3) a bare ASGI app doing only ONNX
Runtime inference (bench/bare_asgi.py, the practical ceiling). Same worker count for all, the
same load generator (wrk), fixed concurrency, a warm-up, and the servers run alternately in every
round so that drift shows. Prints requests/s, p50, p99, cold start and RSS after load, for 1-row
and 64-row requests, then the generation time of every pattern by the CLI. Everything it installs
goes under .bench/ (virtualenvs) and through apt (wrk).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
WORK = REPO / ".bench"
WORKERS = 2
TYPICAL = [[5.1, 3.5, 1.4, 0.2], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.6, 2.0]]
TABULAR = REPO / "sample_models" / "zoo" / "tabular"
# Records of the tabular pipeline (three named inputs, one a string), as many as the rows asked.
RECORDS = [
    {"age": 62.0, "income": 31300.0, "city": "busan"},
    {"age": 52.0, "income": 115000.0, "city": "seoul"},
    {"age": 35.0, "income": 48000.0, "city": "incheon"},
]
# MLServer 1.7.1 installs uvloop as its event loop policy; uvloop 0.22+ breaks its parallel workers
# ("There is no current event loop"), so the last release before it is pinned.
MLSERVER = [
    "mlserver==1.7.1",
    "mlserver-sklearn==1.7.1",
    "uvloop==0.21.0",
    "-r",
    str(REPO / "scripts" / "requirements-train.txt"),
]
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = io.open(os.getenv("BENCH_BODY"), "rb")
wrk.body = file:read("*a")
file:close()
done = function(summary, latency, requests)
  io.write(string.format("RESULT %f %f %f %d %d\\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.errors.status, summary.requests))
end
"""


@dataclass
class Server:
    """How to start one contender and talk to it."""

    name: str
    command: list[str]
    cwd: Path
    env: dict[str, str]
    ready_url: str
    predict_url: str
    body: Callable[[list[list[float]]], bytes]


@dataclass
class Measurement:
    """One wrk run."""

    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int


@dataclass
class Results:
    """Every measurement of one server over all rounds."""

    cold_start_s: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    by_rows: dict[int, list[Measurement]] = field(default_factory=dict)


def run(command: list[str], **kwargs: object) -> None:
    """Run a setup command, failing loudly."""
    subprocess.run(command, check=True, **kwargs)  # type: ignore[call-overload]


def venv(name: str, requirements: list[str]) -> Path:
    """A virtualenv under .bench/ with ``requirements`` (uv args); its python."""
    path = WORK / name
    python = path / "bin" / "python"
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not python.exists():
        run([uv, "venv", "-q", "--python", sys.executable, str(path)])
    run([uv, "pip", "install", "-q", "--python", str(python), *requirements])
    return python


def ensure_wrk() -> str:
    """The path of wrk, installed from Debian's packages if missing."""
    if shutil.which("wrk") is None:
        run(
            ["apt-get", "install", "-y", "-qq", "wrk"],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    return str(shutil.which("wrk"))


def generated_server(port: int, tabular: bool = False) -> Server:
    """The web-single service as its run.sh starts it: iris rows, or the tabular zoo model."""
    name = "bench-tabular" if tabular else "bench"
    out = WORK / "generated"
    model = ["--model", str(TABULAR / "model.onnx"), "--variable-file", str(TABULAR / "vars.yaml")]
    run(
        [sys.executable, "-m", "builder", "--output-dir", str(out), "--force", "--name", name]
        + (model if tabular else []),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    project = out / name
    python = venv("service", ["-r", str(project / "requirements.txt")])
    env = {
        "PATH": f"{python.parent}:{os.environ['PATH']}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKERS": str(WORKERS),
    }
    return Server(
        "generated web-single, tabular records" if tabular else "generated web-single",
        [str(project / "run.sh")],
        project,
        env,
        f"http://127.0.0.1:{port}/ready",
        f"http://127.0.0.1:{port}/predict",
        _records_body if tabular else _rows_body,
    )


def bare_server(port: int, python: Path) -> Server:
    """The bare ASGI app under the same gunicorn + uvicorn workers."""
    model = REPO / "sample_models" / "iris" / "model.onnx"
    command = [
        str(python),
        "-m",
        "gunicorn",
        "bare_asgi:app",
        "-k",
        "uvicorn_worker.UvicornWorker",
        "-w",
        str(WORKERS),
        "-b",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
    ]
    env = {"MODEL_FILEPATH": str(model), "PATH": os.environ["PATH"]}
    url = f"http://127.0.0.1:{port}"
    return Server("bare ASGI + onnxruntime", command, ROOT, env, f"{url}/", f"{url}/", _rows_body)


def mlserver_server(port: int) -> Server:
    """MLServer's scikit-learn runtime serving the same SVC, with WORKERS parallel workers."""
    python = venv("mlserver", MLSERVER)
    models = WORK / "mlserver-model"
    run([str(python), str(ROOT / "mlserver_model.py"), str(models), str(port), str(WORKERS)])
    command = [str(python.parent / "mlserver"), "start", str(models)]
    url = f"http://127.0.0.1:{port}/v2/models/iris"
    return Server(
        "MLServer 1.7 (sklearn)",
        command,
        models,
        {"PATH": os.environ["PATH"]},
        f"{url}/ready",
        f"{url}/infer",
        v2_body,
    )


def _rows_body(rows: list[list[float]]) -> bytes:
    return json.dumps({"data": rows}).encode()


def _records_body(rows: list[list[float]]) -> bytes:
    return json.dumps({"data": (RECORDS * 22)[: len(rows)]}).encode()


def v2_body(rows: list[list[float]], datatype: str = "FP32") -> bytes:
    """MLServer's V2 request for ``rows``, asking for the class probabilities."""
    flat = [value for row in rows for value in row]
    shape = [len(rows), len(rows[0])]
    tensor = {"name": "input-0", "shape": shape, "datatype": datatype, "data": flat}
    return json.dumps({"inputs": [tensor], "outputs": [{"name": "predict_proba"}]}).encode()


def mlserver_settings(port: int) -> dict[str, object]:
    """MLServer's settings.json: its ports from ``port``, WORKERS parallel workers."""
    return {
        "http_port": port,
        "grpc_port": port + 1000,
        "metrics_port": port + 2000,
        "parallel_workers": WORKERS,
        "debug": False,
    }


def start(server: Server) -> tuple[subprocess.Popen[bytes], float]:
    """Launch the server; the seconds from launch to the first 200 on its readiness URL."""
    log = (WORK / f"{server.name.split()[0].lower()}.log").open("ab")
    began = time.perf_counter()
    process = subprocess.Popen(
        server.command,
        cwd=server.cwd,
        env=server.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    while time.perf_counter() - began < 120:
        try:
            with urllib.request.urlopen(server.ready_url, timeout=1) as response:
                if response.status == 200:
                    return process, time.perf_counter() - began
        except OSError:  # refused, reset, or a read timeout while the workers start
            time.sleep(0.02)
    stop(process)
    raise RuntimeError(f"{server.name} did not become ready; see {log.name}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the whole process group, then wait."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants."""
    children = subprocess.run(["pgrep", "-g", str(pid)], capture_output=True, text=True).stdout
    total = 0
    for child in children.split():
        try:
            status = Path(f"/proc/{child}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def load(wrk: str, url: str, body: bytes, seconds: int, connections: int) -> Measurement:
    """One wrk run with one thread and a fixed number of keep-alive connections."""
    (WORK / "body.json").write_bytes(body)
    (WORK / "post.lua").write_text(WRK_SCRIPT)
    env = {**os.environ, "BENCH_BODY": str(WORK / "body.json")}
    output = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(WORK / "post.lua"), url],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    line = next(line for line in output.splitlines() if line.startswith("RESULT"))
    rps, p50, p99, bad, _ = line.split()[1:]
    return Measurement(float(rps), float(p50), float(p99), int(bad))


def measure(server: Server, wrk: str, args: argparse.Namespace, results: Results) -> None:
    """Start, warm up, load with 1 and 64 rows, read memory, stop."""
    process, cold = start(server)
    try:
        results.cold_start_s.append(cold)
        load(wrk, server.predict_url, server.body(TYPICAL[:1]), 2, args.connections)
        for rows in (1, 64):
            body = server.body((TYPICAL * 22)[:rows])
            result = load(wrk, server.predict_url, body, args.seconds, args.connections)
            results.by_rows.setdefault(rows, []).append(result)
        results.rss_mib.append(rss_mib(process.pid))
    finally:
        stop(process)


def generation_times(repeats: int = 5) -> dict[str, float]:
    """Median wall time of `python -m builder --pattern P` per pattern, process start included."""
    sys.path.insert(0, str(REPO))
    from builder_core import pattern_names

    times: dict[str, float] = {}
    for pattern in pattern_names():
        samples = []
        for _ in range(repeats):
            out = WORK / "gen-time"
            shutil.rmtree(out, ignore_errors=True)
            began = time.perf_counter()
            # From a folder with no vars.yaml, so that each pattern uses its own defaults.
            run(
                [sys.executable, "-m", "builder", "--pattern", pattern, "--output-dir", str(out)],
                stdout=subprocess.DEVNULL,
                cwd=WORK,
            )
            samples.append(time.perf_counter() - began)
        times[pattern] = statistics.median(samples)
    return times


def report(servers: list[Server], results: dict[str, Results]) -> None:
    """A Markdown table: medians over the rounds, and the ratio to the ceiling."""
    ceiling = {
        rows: statistics.median(m.rps for m in results[servers[-1].name].by_rows[rows])
        for rows in (1, 64)
    }
    print("| server | rows | req/s | % of ceiling | p50 ms | p99 ms | non-2xx | cold s | RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for server in servers:
        result = results[server.name]
        for rows in (1, 64):
            runs = result.by_rows[rows]
            rps = statistics.median(m.rps for m in runs)
            print(
                f"| {server.name} | {rows} | {rps:,.0f} | {100 * rps / ceiling[rows]:.0f}% "
                f"| {statistics.median(m.p50_ms for m in runs):.2f} "
                f"| {statistics.median(m.p99_ms for m in runs):.2f} "
                f"| {sum(m.non_2xx for m in runs)} "
                f"| {statistics.median(result.cold_start_s):.2f} "
                f"| {statistics.median(result.rss_mib):.0f} |"
            )
        rounds = ", ".join(f"{m.rps:,.0f}" for m in result.by_rows[1])
        print(f"|  | per round (1 row) | {rounds} | | | | | | |")
    tabular = results.get("generated web-single, tabular records")
    if tabular is not None and "generated web-single" in results:
        print("\n| records (3 named inputs) against rows (1 input), same run | 1 row | 64 rows |")
        print("|---|---|---|")
        shares = []
        for rows in (1, 64):
            mine = statistics.median(m.rps for m in tabular.by_rows[rows])
            iris = results["generated web-single"].by_rows[rows]
            shares.append(f"{100 * mine / statistics.median(m.rps for m in iris):.0f}%")
        print(f"| tabular req/s as a share of iris req/s | {shares[0]} | {shares[1]} |")


def main() -> None:
    """Set up, run the rounds, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--skip-mlserver", action="store_true", help="only the generated and bare")
    parser.add_argument(
        "--skip-tabular", action="store_true", help="not the tabular pipeline (records) service"
    )
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    wrk = ensure_wrk()
    generated = generated_server(18301)
    service_python = Path(generated.env["PATH"].split(":")[0]) / "python"
    servers = [generated]
    if not args.skip_tabular:
        servers.append(generated_server(18304, tabular=True))
    if not args.skip_mlserver:
        servers.append(mlserver_server(18302))
    servers.append(bare_server(18303, service_python))
    results = {server.name: Results() for server in servers}
    for round_number in range(args.rounds):
        for server in servers:
            print(f"round {round_number + 1}: {server.name}", file=sys.stderr)
            measure(server, wrk, args, results[server.name])
    print(
        f"\n{WORKERS} workers each, wrk -t1 -c{args.connections} -d{args.seconds}s, "
        f"{args.rounds} rounds (medians)\n"
    )
    report(servers, results)
    print("\n| pattern | generation wall time s (median of 5, CLI start included) |\n|---|---|")
    for pattern, seconds in generation_times().items():
        print(f"| {pattern} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
