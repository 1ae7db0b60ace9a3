"""The Open Inference Protocol over gRPC against the same protocol over REST, one service.

    python bench/grpc_rest.py [--rounds 3] [--seconds 10] [--connections 16]

Starts the generated web-single service (iris model, run.sh, 2 workers) with GRPC_PORT set and
loads it with one client, h2load (nghttp2, from Debian's packages), for every protocol: V2 gRPC
``ModelInfer`` with the inputs in ``raw_input_contents`` (what tritonclient.grpc sends), V2 REST
``/infer`` with JSON data (what curl and most clients send) and V2 REST with the binary tensor
data extension (tritonclient.http's default); h2load speaks HTTP/2 to the gRPC port and
HTTP/1.1 to the REST one, keep-alive, a fixed number of connections, one request in flight on
each. The protocols alternate in every round, for 1-row and 64-row requests. Every request's
time comes from h2load's log (p50, p99); a gRPC call that fails still answers HTTP 200 (the
status is in its trailers), so the service's own ``grpc_requests_total`` is read afterwards and
any code but OK is reported.

Then the start-up cost: the seconds from launch to the first 200 on /ready with gRPC off and on,
alternating.
"""

from __future__ import annotations

import argparse
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from serving import TYPICAL, WORK, Server, generated_server, run, start, stop, v2_body

REPO = Path(__file__).resolve().parent.parent
REST_PORT = 18311
GRPC_PORT = 18312
METHOD = "/inference.GRPCInferenceService/ModelInfer"


@dataclass
class Protocol:
    """One way of asking: its URL, body and headers."""

    name: str
    url: str
    body: bytes
    headers: list[str]
    http1: bool


@dataclass
class Run:
    """One h2load run."""

    rps: float
    p50_ms: float
    p99_ms: float
    failed: int


def ensure_h2load() -> str:
    """The path of h2load, installed from Debian's packages if missing."""
    found = subprocess.run(["which", "h2load"], capture_output=True, text=True).stdout.strip()
    if not found:
        run(["apt-get", "install", "-y", "-qq", "nghttp2-client"])
        found = "h2load"
    return found


def grpc_message(rows: list[list[float]]) -> bytes:
    """A ModelInfer request as gRPC frames it: a flag byte, the length, the message."""
    sys.path.insert(0, str(REPO / "template"))
    from src.protocol import grpc_predict_v2_pb2 as pb  # type: ignore[import-not-found]

    request = pb.ModelInferRequest(model_name="bench")
    request.inputs.add(name="input", datatype="FP32", shape=[len(rows), len(rows[0])])
    request.raw_input_contents.append(np.asarray(rows, dtype="<f4").tobytes())
    message: bytes = request.SerializeToString()
    return struct.pack(">?I", False, len(message)) + message


def rest_binary(rows: list[list[float]]) -> tuple[bytes, str]:
    """A REST V2 request with the binary tensor data extension, and its header length."""
    header = (
        b'{"inputs":[{"name":"input","shape":[%d,%d],"datatype":"FP32",'
        b'"parameters":{"binary_data_size":%d}}]}'
        % (len(rows), len(rows[0]), len(rows) * len(rows[0]) * 4)
    )
    return header + np.asarray(rows, dtype="<f4").tobytes(), str(len(header))


def protocols(rows: list[list[float]]) -> list[Protocol]:
    """The three ways of asking the service for ``rows``."""
    rest = f"http://127.0.0.1:{REST_PORT}/v2/models/bench/infer"
    json_body = (
        v2_body(rows)
        .replace(b'"input-0"', b'"input"')
        .replace(b', "outputs": [{"name": "predict_proba"}]', b"")
    )
    binary, header_length = rest_binary(rows)
    return [
        Protocol(
            "V2 gRPC (raw_input_contents)",
            f"http://127.0.0.1:{GRPC_PORT}{METHOD}",
            grpc_message(rows),
            ["content-type: application/grpc", "te: trailers"],
            http1=False,
        ),
        Protocol("V2 REST (JSON)", rest, json_body, ["content-type: application/json"], http1=True),
        Protocol(
            "V2 REST (binary tensor data)",
            rest,
            binary,
            [
                "content-type: application/octet-stream",
                f"inference-header-content-length: {header_length}",
            ],
            http1=True,
        ),
    ]


def load(h2load: str, protocol: Protocol, seconds: int, connections: int) -> Run:
    """One h2load run; requests/s and the percentiles of its per-request log."""
    with tempfile.TemporaryDirectory() as scratch:
        body = Path(scratch) / "body"
        body.write_bytes(protocol.body)
        log = Path(scratch) / "log"
        command = [h2load, "-c", str(connections), "-m", "1", "-D", str(seconds)]
        command += ["--warm-up-time", "1", "-d", str(body), "--log-file", str(log)]
        for header in protocol.headers:
            command += ["-H", header]
        command += ["--h1"] if protocol.http1 else []
        output = subprocess.run(
            [*command, protocol.url], capture_output=True, text=True, check=True
        ).stdout
        durations = [int(line.split()[2]) / 1000 for line in log.read_text().splitlines()]
    finished = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", output)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", output)
    if finished is None or codes is None:
        raise RuntimeError(f"h2load said nothing of its results:\n{output}")
    rps = float(finished.group(1))
    failed = sum(int(count) for count in codes.groups()[1:])
    quantiles = statistics.quantiles(durations, n=100)
    return Run(rps, quantiles[49], quantiles[98], failed)


def grpc_refusals() -> int:
    """The calls the service answered with a gRPC status other than OK, from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{REST_PORT}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    pattern = re.compile(r'^grpc_requests_total\{code="(\w+)",method="[^"]+"\} ([\d.e+]+)$', re.M)
    return int(sum(float(count) for code, count in pattern.findall(text) if code != "OK"))


def cold_starts(server: Server, repeats: int) -> dict[str, list[float]]:
    """Seconds to ready with gRPC off and on, alternating."""
    times: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(repeats):
        for state, port in (("off", "0"), ("on", str(GRPC_PORT))):
            server.env["GRPC_PORT"] = port
            process, seconds = start(server)
            stop(process)
            times[state].append(seconds)
    return times


def main() -> None:
    """Set up, run the rounds, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--cold-starts", type=int, default=7)
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    h2load = ensure_h2load()
    server = generated_server(REST_PORT)
    server.env["GRPC_PORT"] = str(GRPC_PORT)
    asked = {rows: protocols((TYPICAL * 22)[:rows]) for rows in (1, 64)}
    results: dict[tuple[str, int], list[Run]] = {}
    process, _ = start(server)
    try:
        for round_number in range(args.rounds):
            for rows, ways in asked.items():
                for protocol in ways:
                    print(
                        f"round {round_number + 1}: {protocol.name}, {rows} rows", file=sys.stderr
                    )
                    measured = load(h2load, protocol, args.seconds, args.connections)
                    results.setdefault((protocol.name, rows), []).append(measured)
        refused = grpc_refusals()
    finally:
        stop(process)
    print(f"\n2 workers, h2load -c{args.connections} -m1 -D{args.seconds}, {args.rounds} rounds")
    print("(medians); gRPC calls answered other than OK: " + str(refused) + "\n")
    print("| protocol | rows | req/s | vs REST JSON | p50 ms | p99 ms | failed | per round |")
    print("|---|---|---|---|---|---|---|---|")
    for rows, ways in asked.items():
        baseline = statistics.median(r.rps for r in results[ways[1].name, rows])
        for protocol in ways:
            runs = results[protocol.name, rows]
            rps = statistics.median(r.rps for r in runs)
            print(
                f"| {protocol.name} | {rows} | {rps:,.0f} | {rps / baseline:.2f}x "
                f"| {statistics.median(r.p50_ms for r in runs):.2f} "
                f"| {statistics.median(r.p99_ms for r in runs):.2f} "
                f"| {sum(r.failed for r in runs)} "
                f"| {', '.join(f'{r.rps:,.0f}' for r in runs)} |"
            )
    starts = cold_starts(server, args.cold_starts)
    print("\n| gRPC | cold start s (median) | each |\n|---|---|---|")
    for state, seconds in starts.items():
        each = ", ".join(f"{value:.2f}" for value in seconds)
        print(f"| {state} | {statistics.median(seconds):.2f} | {each} |")


if __name__ == "__main__":
    main()
