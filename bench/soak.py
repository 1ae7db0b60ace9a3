"""Soak: every pattern under mixed valid, invalid and oversized traffic; nothing fails, memory flat.

    python bench/soak.py [--seconds 60] [--concurrency 32] [--pattern P ...]

For each pattern (all by default): generates the service, starts it with its own run.sh (two
workers) on 127.0.0.1 with what its pattern runs beside it (a redis-server, the queue worker;
``tests/live.py``), and after a 5 s warm-up sends ``--seconds`` of traffic from ``--concurrency``
kept-alive connections. The mix: valid requests (60%), invalid ones (25%: wrong types, NaN, not
JSON, a missing field, too many rows, a malformed ID), bodies just under the size cap (10%: the
most a request may make a worker parse) and bodies twice the cap (5%, half of them chunked, with
no Content-Length). Beside the load, a probe asks ``GET /health`` on a fresh connection every
0.5 s, and a sampler reads the RSS of the server's process tree (gunicorn's master and workers)
every second.

Targets, per pattern (the exit status is 1 if one is missed): no 5xx; no request without an
answer; every valid request 200, every oversized one 413 and every other one a 4xx; /health
never slower than 1 s; RSS flat after the warm-up (median of the last window at most 10% over
the first; a window is a minute, or a quarter of the run if that is shorter); peak RSS below the
pod's memory limit from the manifests. Bounded: (5 + seconds) of traffic per pattern plus
start-up. Virtualenvs go under .bench/.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from live import example_body, running  # noqa: E402 - needs tests/ on sys.path

from builder_core import build, pattern_names  # noqa: E402 - needs the checkout on sys.path
from builder_core.patterns import PatternInfo, load_pattern  # noqa: E402

WORK = REPO / ".bench"
WARM_UP = 5.0
PROBE_EVERY = 0.5
HEALTH_LIMIT = 1.0
GROWTH_LIMIT = 0.10
# Share of each kind of request in the mix.
MIX = {"valid": 60, "invalid": 25, "near cap": 10, "oversized": 5}
PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 2**20


@dataclass(frozen=True)
class Request:
    """One request of the mix: its kind, where it goes, its body, whether it is sent chunked."""

    kind: str
    path: str
    body: bytes
    chunked: bool = False


def rows_requests(example: dict[str, Any], max_rows: int, cap: int) -> dict[str, list[Request]]:
    """The mix for a service taking rows of numbers."""
    rng = random.Random(0)  # noqa: S311 - load, not cryptography
    row = example["data"][0]
    valid = [
        Request(
            "valid",
            path,
            json.dumps({"data": [[v * rng.uniform(0.8, 1.2) for v in row]] * n}).encode(),
        )
        for n in (1, 8, 64)
        for path in ("/predict", "/predict/label")
    ]
    bad = [
        {"data": [["1.0", *row[1:]]]},
        {"data": [row[:-1]]},
        {"data": []},
        {"rows": [row]},
        {"data": [row] * (max_rows + 1)},
    ]
    invalid = [Request("invalid", "/predict", json.dumps(body).encode()) for body in bad]
    invalid += [Request("invalid", "/predict", b'{"data": [[NaN, 1, 2, 3]]}')]
    invalid += [Request("invalid", "/predict/label", b"data=1")]
    # The most parsing a body under the cap can cause: the shortest rows JSON allows.
    short = ",".join(["[1" + ",1" * (len(row) - 1) + "]"] * ((cap - 16) // (2 * len(row) + 2)))
    near = b'{"data":[' + short.encode() + b"]}"
    return {"valid": valid, "invalid": invalid, "near cap": [Request("near cap", "/predict", near)]}


def id_requests(project: Path, cap: int) -> dict[str, list[Request]]:
    """The mix for a service taking the ID of a stored item."""
    ids = sorted(path.name for path in (project / "data").iterdir())
    valid = [
        Request("valid", path, json.dumps({"data": data_id}).encode())
        for data_id in ids
        for path in ("/predict", "/predict/label")
    ]
    bad = [{"data": "../models/label.json"}, {"data": 7}, {"data": ""}, {"id": ids[0]}]
    invalid = [Request("invalid", "/predict", json.dumps(body).encode()) for body in bad]
    invalid += [Request("invalid", "/predict", b"not json")]
    near = json.dumps({"data": "a" * (cap - 20)}).encode()
    return {"valid": valid, "invalid": invalid, "near cap": [Request("near cap", "/predict", near)]}


def the_mix(project: Path, info: PatternInfo, base: str) -> dict[str, list[Request]]:
    """Every request the load may send, by kind."""
    variables = yaml.safe_load((project / ".builder-answers.yml").read_text())["variables"]
    cap = int(variables["max_body_bytes"])
    if info.request == "rows":
        mix = rows_requests(json.loads(example_body(base)), int(variables["max_rows"]), cap)
    else:
        mix = id_requests(project, cap)
    over = b'{"data": "' + b"x" * (2 * cap) + b'"}'
    mix["oversized"] = [
        Request("oversized", "/predict", over),
        Request("oversized", "/predict", over, chunked=True),
    ]
    return mix


@dataclass
class Tally:
    """What the load saw: statuses by kind, answers that broke the rules, requests unanswered."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, request: Request, status: int | None, error: str = "") -> None:
        """Count one request: valid ones must be 200, oversized ones 413, all others a 4xx."""
        with self.lock:
            if status is None:
                self.errors[error] += 1
                return
            self.statuses[(request.kind, status)] += 1
            wanted = {"valid": status == 200, "oversized": status == 413}.get(
                request.kind, 400 <= status < 500
            )
            if not wanted:
                self.unexpected[f"{request.kind} {request.path} -> {status}"] += 1

    def count(self, test: Callable[[int], bool] = lambda status: True) -> int:
        """How many answers had a status passing ``test``."""
        return sum(n for (_, status), n in self.statuses.items() if test(status))


def send(connection: http.client.HTTPConnection, request: Request) -> int:
    """One request over a kept-alive connection; the answer's status."""
    headers = {"content-type": "application/json"}
    if request.chunked:
        chunks = [request.body[i : i + 65536] for i in range(0, len(request.body), 65536)]
        connection.request("POST", request.path, iter(chunks), headers, encode_chunked=True)
    else:
        connection.request("POST", request.path, request.body, headers)
    response = connection.getresponse()
    response.read()
    return response.status


def load(
    base: str, mix: dict[str, list[Request]], stop: threading.Event, seed: int, tally: Tally
) -> None:
    """One connection's loop: weighted random requests of the mix until ``stop`` is set."""
    rng = random.Random(seed)  # noqa: S311 - load, not cryptography
    url = urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    kinds, weights = list(MIX), list(MIX.values())
    while not stop.is_set():
        request = rng.choice(mix[rng.choices(kinds, weights)[0]])
        try:
            tally.record(request, send(connection, request))
        except (OSError, http.client.HTTPException) as err:
            tally.record(request, None, type(err).__name__)
            connection.close()
    connection.close()


def probe(base: str, stop: threading.Event, latencies: list[float]) -> None:
    """GET /health on a fresh connection every PROBE_EVERY seconds; seconds each (inf: failed)."""
    url = urlsplit(base)
    while not stop.wait(PROBE_EVERY):
        started = time.monotonic()
        connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=5)
        try:
            connection.request("GET", "/health")
            ok = connection.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            ok = False
        finally:
            connection.close()
        latencies.append(time.monotonic() - started if ok else float("inf"))


def tree_rss(pid: int) -> int:
    """Bytes resident in ``pid`` and all its descendants (shared pages counted in each)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += parents.get(current, [])
        try:
            total += int((Path("/proc") / str(current) / "statm").read_text().split()[1]) * PAGE
        except OSError:
            continue
    return total


def sample(pid: int, stop: threading.Event, samples: list[tuple[float, int]]) -> None:
    """The server tree's RSS every second, with the time of each sample."""
    while not stop.wait(1.0):
        samples.append((time.monotonic(), tree_rss(pid)))


@dataclass
class Result:
    """One pattern's soak."""

    pattern: str
    seconds: float
    tally: Tally
    health: list[float]
    rss: tuple[float, float, float]  # MiB: median of the first window, of the last, the peak
    limit: float  # MiB: the server container's memory limit in the manifests

    def misses(self) -> list[str]:
        """The targets this run missed."""
        first, last, peak = self.rss
        checks = {
            "5xx": self.tally.count(lambda status: status >= 500) == 0,
            "unanswered requests": not self.tally.errors,
            "unexpected statuses": not self.tally.unexpected,
            "/health slower than 1 s": bool(self.health) and max(self.health) <= HEALTH_LIMIT,
            "memory growth": last <= first * (1 + GROWTH_LIMIT),
            "memory limit": peak < self.limit,
        }
        return [name for name, met in checks.items() if not met]


def memory_limit(project: Path) -> float:
    """MiB: the memory limit of the container serving HTTP, from the manifests."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    for path in sorted((project / "manifests").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "Deployment":
                continue
            for container in doc["spec"]["template"]["spec"]["containers"]:
                if any(port.get("name") == "http" for port in container.get("ports", [])):
                    value = str(container["resources"]["limits"]["memory"])
                    unit = next(
                        (u for u in sorted(units, key=len, reverse=True) if value.endswith(u)), ""
                    )
                    return float(value.removesuffix(unit)) * units.get(unit, 1) / MIB
    raise SystemExit(f"{project}: no Deployment serving HTTP in the manifests")


def service_python(project: Path) -> Path:
    """A virtualenv under .bench/ with the project's pinned requirements (shared by equal ones)."""
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit("uv is required (pip install uv)")
    requirements = project / "requirements.txt"
    venv = WORK / f"venv-soak-{hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]}"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
        subprocess.run(
            [uv, "pip", "install", "-q", "--python", str(python), "-r", str(requirements)],
            check=True,
        )
    return python


def windows(
    samples: list[tuple[float, int]], start: float, end: float
) -> tuple[float, float, float]:
    """MiB: median RSS of the first and of the last window of [start, end], and the peak."""
    width = min(60.0, (end - start) / 4)
    first = [rss for at, rss in samples if start <= at < start + width]
    last = [rss for at, rss in samples if end - width <= at <= end]
    peak = max((rss for at, rss in samples if at >= start), default=0)
    if not first or not last:
        raise SystemExit("too few RSS samples: run longer (--seconds)")
    return statistics.median(first) / MIB, statistics.median(last) / MIB, peak / MIB


def drive(
    base: str, pid: int, mix: dict[str, list[Request]], seconds: float, concurrency: int
) -> tuple[Tally, list[float], tuple[float, float, float]]:
    """The load, the probe and the sampler for WARM_UP + ``seconds``; what they saw."""
    stop, tally = threading.Event(), Tally()
    health: list[float] = []
    samples: list[tuple[float, int]] = []
    threads = [
        threading.Thread(target=load, args=(base, mix, stop, i, tally)) for i in range(concurrency)
    ]
    threads += [
        threading.Thread(target=probe, args=(base, stop, health)),
        threading.Thread(target=sample, args=(pid, stop, samples)),
    ]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    try:
        stop.wait(WARM_UP + seconds)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    return tally, health, windows(samples, started + WARM_UP, time.monotonic())


def soak(pattern: str, seconds: float, concurrency: int) -> Result:
    """Generate, start and soak one pattern; its server log is kept as .bench/soak-<pattern>.log."""
    folder = Path(tempfile.mkdtemp(dir=WORK, prefix=f"soak-{pattern}-"))
    try:
        project = build(pattern=pattern, name=f"soak-{pattern}", output_dir=folder).target
        info = load_pattern(pattern).info
        with running(project, service_python(project), info, folder) as stack:
            mix = the_mix(project, info, stack.base)
            tally, health, rss = drive(stack.base, stack.server.pid, mix, seconds, concurrency)
        shutil.copyfile(folder / "server.log", WORK / f"soak-{pattern}.log")
        return Result(pattern, seconds, tally, health, rss, memory_limit(project))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def machine() -> str:
    """The CPU model and count, for the record."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [
        line.split(":", 1)[1].strip()
        for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
        if line.startswith("model name")
    ]
    return f"{names[0] if names else platform.machine()}, {os.cpu_count()} CPUs"


HEADER = (
    f"{'pattern':<15}{'requests':>9}{'req/s':>7}{'5xx':>5}{'unanswered':>11}{'unexpected':>11}"
    f"{'health max ms':>14}{'RSS first':>10}{'RSS last':>9}{'growth':>8}{'peak':>6}{'limit':>6}"
    "  result"
)


def row(result: Result) -> str:
    """The table line of one pattern (RSS in MiB)."""
    tally, (first, last, peak) = result.tally, result.rss
    total = tally.count() + sum(tally.errors.values())
    missed = result.misses()
    return (
        f"{result.pattern:<15}{total:>9}{total / (result.seconds + WARM_UP):>7.0f}"
        f"{tally.count(lambda status: status >= 500):>5}{sum(tally.errors.values()):>11}"
        f"{sum(tally.unexpected.values()):>11}{max(result.health, default=0) * 1000:>14.1f}"
        f"{first:>10.1f}{last:>9.1f}{(last - first) / first:>+8.1%}{peak:>6.0f}{result.limit:>6.0f}"
        f"  {'ok' if not missed else 'MISSED: ' + ', '.join(missed)}"
    )


def details(result: Result) -> str:
    """Statuses by kind of request, and anything that went wrong."""
    by_kind = ", ".join(
        f"{kind} {status}: {n}" for (kind, status), n in sorted(result.tally.statuses.items())
    )
    extra = [f"{what}: {n}" for what, n in (result.tally.unexpected + result.tally.errors).items()]
    return f"  {result.pattern}: {by_kind}" + ("; " + "; ".join(extra) if extra else "")


def main() -> None:
    """Soak every pattern asked for; print the table; exit 1 if a target was missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pattern", action="append", choices=pattern_names())
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is required (apt-get install redis-server)")
    WORK.mkdir(exist_ok=True)
    print(
        f"soak: {args.seconds:.0f} s (+{WARM_UP:.0f} s warm-up) per pattern, {args.concurrency} "
        f"connections, mix {MIX}; 2 server workers; {machine()}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    print(HEADER, flush=True)
    results = []
    for pattern in args.pattern or pattern_names():
        results.append(soak(pattern, args.seconds, args.concurrency))
        print(row(results[-1]), flush=True)
    for result in results:
        print(details(result))
    if any(result.misses() for result in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
