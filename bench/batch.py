"""Batch benchmark: the generated Spark job against a one-core loop and the online service.

    python bench/batch.py [--rows 2000000 8000000] [--models sample forest] [--online-rows 200000]

Scores the same Parquet data set (the project's scripts/sample_data.py, no bad rows) three ways,
for the sample model and for a 300-tree random forest: (1) the generated batch job on Spark
local[2], in a child process that times the session's creation and a first 1,000-row run (the
start-up: it spawns the Python workers, which load the model) apart from the run over the big data
set; (2) one Python process looping Parquet batches of 10,000 rows through ONNX Runtime with one
thread and writing Parquet predictions (id, label, score: the one-core baseline, reading and
writing as the job does, without its checks); (3) the generated web-single service (2 workers)
called with 1,000-row requests by 4 client threads over --online-rows rows, its start-up excluded
(what a user would do without the pattern). Every child's process tree is sampled through /proc
for its peak RSS and CPU time, driver side (Python driver + JVM) apart from the Python workers.
Prints one Markdown table, the ratios the targets name and where Spark's time went. The projects,
a virtualenv (uv, the project's requirements-dev.txt), the data and the logs go under .bench/.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import datetime as dt
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
WORK = REPO / ".bench" / "batch"
MASTER = "local[2]"
SERVICE_WORKERS = 2
CLIENTS = 4
REQUEST_ROWS = 1000
WARM_ROWS = 1000
SAMPLE_SECONDS = 0.2
FOREST = REPO / "sample_models" / "iris-slow"
MODELS: dict[str, list[str]] = {
    "sample": [],
    "forest": ["--model", str(FOREST / "model.onnx"), "--labels", str(FOREST / "label.json")],
}
# Processes of a Spark job's tree that are Python workers (forked from the daemon, or not).
SPARK_WORKER_MODULES = ("pyspark.daemon", "pyspark.worker")

# Run by the venv's python in the batch project: the job as `python -m src.batch` runs it, timed.
DRIVER = '''"""The generated job, timed: session, a 1,000-row run (start-up), the big run, stop."""
import datetime as dt
import json
import logging
import os
import sys
import time

began = time.perf_counter()
sys.path.insert(0, os.getcwd())
from src.batch import job
from src.batch.settings import build_settings, defaults

warm_input, big_input, output, master = sys.argv[1:5]
stages = []


class Stages(logging.Handler):
    def emit(self, record):
        fields = getattr(record, "fields", {})
        if "stage" in fields:
            stages.append([fields["stage"], fields["seconds"]])


def settings(uri, date):
    values = {**defaults(), "input": uri, "output": output, "master": master}
    values.update(database_url="", metrics_file="", pushgateway_url="")
    return build_settings(values, [date])


logging.getLogger("src.batch").setLevel(logging.INFO)
logging.getLogger("src.batch").addHandler(Stages())
warm_date, big_date = dt.date(2000, 1, 1), dt.date(2000, 1, 2)
imported, clock = time.perf_counter(), {"imported": time.time()}
spark = job.session(settings(warm_input, warm_date))
started = time.perf_counter()
job.run_date(spark, settings(warm_input, warm_date), warm_date)
warmed, clock["warmed"] = time.perf_counter(), time.time()
stages.clear()
report = job.run_date(spark, settings(big_input, big_date), big_date)
done, clock["done"] = time.perf_counter(), time.time()
spark.stop()
result = {
    "imports_s": imported - began,
    "session_s": started - imported,
    "warm_s": warmed - started,
    "job_s": done - warmed,
    "stop_s": time.perf_counter() - done,
    "rows": report.rows_predicted,
    "rejected": report.rows_rejected,
    "stages": stages,
    "clock": clock,
}
print("RESULT " + json.dumps(result), flush=True)
'''

# Run by the venv's python in the batch project: what a user writes without Spark, on one core.
BASELINE = '''"""Parquet batches of 10,000 rows through ONNX Runtime (1 thread), to Parquet."""
import json
import os
import sys
import time
from pathlib import Path

began = time.perf_counter()
sys.path.insert(0, os.getcwd())
import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
import pandas  # pyarrow imports it at the first to_numpy: here, with the other imports
from src.app import config
from src.batch.settings import ID_COLUMN, INPUT_COLUMNS

source, target = Path(sys.argv[1]), sys.argv[2]
pa.set_cpu_count(1)
pa.set_io_thread_count(1)
imported = time.perf_counter()
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
model = Path("models") / config.MODEL_FILE_NAME
session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
names = json.loads((Path("models") / config.LABEL_FILE_NAME).read_text())
labels = np.asarray([names[str(index)] for index in range(len(names))], dtype=object)
name = session.get_inputs()[0].name
columns = INPUT_COLUMNS[name]
files = sorted(source.glob("*.parquet"))
id_type = pq.read_schema(files[0]).field(ID_COLUMN).type
schema = pa.schema([(ID_COLUMN, id_type), ("label", pa.string()), ("score", pa.float32())])
loaded = time.perf_counter()
rows = 0
with pq.ParquetWriter(target, schema) as writer:
    for path in files:
        batches = pq.ParquetFile(path).iter_batches(
            batch_size=10000, columns=[ID_COLUMN, *columns], use_threads=False
        )
        for batch in batches:
            values = [batch.column(c).to_numpy(zero_copy_only=False) for c in columns]
            feed = np.column_stack(values).astype(np.float32, copy=False)
            (scores,) = session.run([config.OUTPUT_NAME], {name: feed})
            best = scores.argmax(axis=1)
            best_score = pa.array(scores[np.arange(len(best)), best].astype(np.float32))
            label = pa.array(labels[best], type=pa.string())
            arrays = [batch.column(ID_COLUMN), label, best_score]
            writer.write_batch(pa.record_batch(arrays, schema=schema))
            rows += batch.num_rows
result = {
    "imports_s": imported - began,
    "load_s": loaded - imported,
    "loop_s": time.perf_counter() - loaded,
    "rows": rows,
}
print("RESULT " + json.dumps(result), flush=True)
'''

# Run by the venv's python: the first rows of a data set as /predict bodies, one JSON a line.
BODIES = '''"""The first ROWS rows of a data set as /predict bodies of PER rows, one a line."""
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.getcwd())
import pyarrow.dataset as ds
from src.batch.settings import INPUT_COLUMNS

source, target, rows, per = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
columns = [column for names in INPUT_COLUMNS.values() for column in names]
table = ds.dataset(source).head(rows, columns=columns)
values = [list(row) for row in zip(*(table.column(c).to_pylist() for c in columns))]
with target.open("w") as out:
    for start in range(0, len(values), per):
        out.write(json.dumps({"data": values[start : start + per]}) + "\\n")
'''


@dataclass
class Projects:
    """The two projects generated for one model: the batch job and the online service."""

    batch: Path
    online: Path


@dataclass
class Usage:
    """What a process tree used: peak RSS (MiB) and CPU seconds, driver side and workers.

    CPU seconds are every process's as last read: up to 0.2 s of a process's end is missed, and
    a helper living less than that (Spark's launcher) entirely.
    """

    driver_mib: float = 0.0
    workers_mib: float = 0.0
    driver_cpu_s: float = 0.0
    workers_cpu_s: float = 0.0
    # Every sample's time (time.time()) and CPU seconds so far, driver side and workers.
    timeline: list[tuple[float, float, float]] = field(default_factory=list)

    def cpu_between(self, start: float, end: float) -> tuple[float, float]:
        """CPU seconds of each side from ``start`` to ``end`` (to a sample's interval)."""
        times = [sample[0] for sample in self.timeline]

        def at(moment: float) -> tuple[float, float, float]:
            return self.timeline[min(bisect.bisect_left(times, moment), len(times) - 1)]

        first, last = at(start), at(end)
        return last[1] - first[1], last[2] - first[2]


class ProcStat(NamedTuple):
    """What /proc/PID/stat says of a process."""

    ppid: int
    started: str  # clock ticks from boot to its start: with the PID, one process
    cpu_s: float  # user + system


@dataclass
class Outcome:
    """One approach over one data set: its start-up, its work and its memory."""

    model: str
    rows: int
    approach: str
    startup_s: float
    work_s: float
    wall_s: float
    usage: Usage
    has_workers: bool
    detail: str = ""

    @property
    def rate(self) -> float:
        """Rows/s, start-up excluded."""
        return self.rows / self.work_s

    @property
    def rate_with_startup(self) -> float:
        """Rows/s, start-up included."""
        return self.rows / (self.startup_s + self.work_s)


@dataclass
class TreeSampler:
    """RSS and CPU time of ``root`` and every descendant every 0.2 s, read in a thread.

    A process counts as a worker when ``is_worker(pid, cmdline)`` says so; the peak of each side
    is the peak of its sum (RSS counts pages shared by forked workers once per process, so the
    workers' side is an overestimate). Read from /proc: psutil is not a dependency here.
    """

    root: int
    is_worker: Callable[[int, str], bool]
    usage: Usage = field(default_factory=Usage)
    seen: dict[int, str] = field(default_factory=dict)
    _cpu: dict[tuple[int, str], tuple[bool, float]] = field(default_factory=dict)
    _done: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Begin sampling."""
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> Usage:
        """End sampling; what the tree used."""
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        self.usage.driver_cpu_s, self.usage.workers_cpu_s = self._totals()
        return self.usage

    def _totals(self) -> tuple[float, float]:
        cpu = self._cpu.values()
        driver = sum(seconds for worker, seconds in cpu if not worker)
        return driver, sum(seconds for worker, seconds in cpu if worker)

    def _loop(self) -> None:
        while True:
            self.sample()
            if self._done.wait(SAMPLE_SECONDS):
                return

    def sample(self) -> None:
        """One reading of the tree."""
        rss = {True: 0.0, False: 0.0}
        for pid in _tree(self.root):
            found = _stat(pid)
            if found is None:
                continue
            self.seen.setdefault(pid, found.started)
            # Once a worker, always one: an exiting process's cmdline reads empty.
            key = (pid, found.started)
            worker = self._cpu.get(key, (False, 0.0))[0] or self.is_worker(pid, _cmdline(pid))
            self._cpu[key] = (worker, found.cpu_s)
            rss[worker] += _rss_mib(pid)
        self.usage.driver_mib = max(self.usage.driver_mib, rss[False])
        self.usage.workers_mib = max(self.usage.workers_mib, rss[True])
        self.usage.timeline.append((time.time(), *self._totals()))


def _stat(pid: int) -> ProcStat | None:
    """What /proc says of ``pid``, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the name, in parentheses, may hold spaces
    ticks = os.sysconf("SC_CLK_TCK")
    return ProcStat(int(fields[1]), fields[19], (int(fields[11]) + int(fields[12])) / ticks)


def _tree(root: int) -> list[int]:
    """``root`` and its descendants, from the parent PIDs in /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (found := _stat(int(entry.name))) is not None:
            children.setdefault(found.ppid, []).append(int(entry.name))
    tree, index = [root], 0
    while index < len(tree):
        tree.extend(children.get(tree[index], []))
        index += 1
    return tree


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _rss_mib(pid: int) -> float:
    try:
        resident = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError):
        return 0.0
    return resident * os.sysconf("SC_PAGE_SIZE") / 2**20


def run(command: list[str], **kwargs: Any) -> None:
    """Run a setup command, failing loudly."""
    subprocess.run(command, check=True, **kwargs)


def generate(model: str) -> Projects:
    """Generate the batch and the web-single project for ``model``, afresh under .bench/."""
    out = WORK / "projects"
    made = []
    for pattern in ("batch", "web-single"):
        name = f"bench-{pattern}-{model}"
        shutil.rmtree(out / name, ignore_errors=True)
        options = ["--pattern", pattern, "--name", name, "--output-dir", str(out), *MODELS[model]]
        run(
            [sys.executable, "-m", "builder", *options],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL,
        )
        made.append(out / name)
    return Projects(*made)


def venv(projects: Projects) -> Path:
    """The python of the projects' virtualenv, reused if present and brought up to date.

    One for every model: the generated requirements do not depend on the model.
    """
    path = WORK / "venv"
    python = path / "bin" / "python"
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not python.exists():
        run([uv, "venv", "-q", "--python", sys.executable, str(path)])
    requirements = [projects.batch / "requirements-dev.txt", projects.online / "requirements.txt"]
    run([uv, "pip", "install", "-q", "--python", str(python), *_each("-r", requirements)])
    # Bytecode, as pip writes it into the image: without it every Spark worker compiles pandas and
    # pyarrow anew on each start when PYTHONDONTWRITEBYTECODE is set (it is in the image).
    run(
        [str(python), "-m", "compileall", "-q", "-j", "0", str(path / "lib")],
        stdout=subprocess.DEVNULL,
    )
    return python


def _each(flag: str, paths: list[Path]) -> list[str]:
    return [part for path in paths for part in (flag, str(path))]


def sample_data(project: Path, python: Path, rows: int) -> Path:
    """A data set of ``rows`` rows (no bad ones), written by the project's own script."""
    folder = WORK / "data" / f"rows-{rows}"
    shutil.rmtree(folder, ignore_errors=True)
    script = ["scripts/sample_data.py", str(folder), "--rows", str(rows), "--bad-every", "0"]
    run([str(python), *script], cwd=project, stdout=subprocess.DEVNULL)
    return folder


def online_bodies(project: Path, python: Path, data: Path, rows: int) -> list[bytes]:
    """The first ``rows`` rows of ``data`` as /predict bodies of REQUEST_ROWS rows each."""
    target = WORK / f"online-{rows}.jsonl"
    (WORK / "bodies.py").write_text(BODIES)
    arguments = [str(data), str(target), str(rows), str(REQUEST_ROWS)]
    run([str(python), str(WORK / "bodies.py"), *arguments], cwd=project)
    return target.read_bytes().splitlines()


def child(
    command: list[str], cwd: Path, log: Path, is_worker: Callable[[int, str], bool]
) -> tuple[dict[str, Any], float, Usage]:
    """Run a measured child to its end: its RESULT line as JSON, its wall time, what it used."""
    env = {key: value for key, value in os.environ.items() if not _foreign(key)}
    began = time.perf_counter()
    with log.open("wb") as errors:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=errors,
            start_new_session=True,
        )
        sampler = TreeSampler(process.pid, is_worker)
        sampler.start()
        try:
            output, _ = process.communicate()
        finally:
            usage = sampler.stop()
            stop_tree(process, sampler)
    wall = time.perf_counter() - began
    lines = [line for line in output.decode().splitlines() if line.startswith("RESULT ")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"{command[1]} failed ({process.returncode}); see {log}")
    return json.loads(lines[-1].removeprefix("RESULT ")), wall, usage


def _foreign(key: str) -> bool:
    """Settings of the caller's environment that would change what the children measure."""
    return key.startswith(("SPARK_", "PYSPARK_", "DATABASE_URL", "BATCH_", "MODEL_", "LABEL_"))


def stop_tree(process: subprocess.Popen[bytes], sampler: TreeSampler) -> None:
    """SIGTERM the child's process group, then SIGKILL whatever is left of its tree.

    Spark's Python daemon makes a process group of its own, so the group alone misses it.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    for pid, started in sampler.seen.items():
        found = _stat(pid)
        if found is not None and found.started == started:  # the same process, not a reused PID
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _spark_worker(_pid: int, cmdline: str) -> bool:
    return any(module in cmdline for module in SPARK_WORKER_MODULES)


def spark_job(python: Path, project: Path, data: dict[int, Path], model: str, rows: int) -> Outcome:
    """The generated job on MASTER over ``rows`` rows, after its start-up on WARM_ROWS rows."""
    output = WORK / "out" / f"{model}-{rows}-job"
    shutil.rmtree(output, ignore_errors=True)
    (WORK / "driver.py").write_text(DRIVER)
    command = [str(python), str(WORK / "driver.py"), str(data[WARM_ROWS]), str(data[rows])]
    log = WORK / "logs" / f"{model}-{rows}-job.log"
    result, wall, usage = child([*command, str(output), MASTER], project, log, _spark_worker)
    shutil.rmtree(output, ignore_errors=True)
    if result["rows"] != rows or result["rejected"]:
        raise RuntimeError(f"the job predicted {result['rows']} of {rows} rows; see {log}")
    return Outcome(
        model,
        rows,
        f"Spark job, {MASTER}",
        result["session_s"] + result["warm_s"],
        result["job_s"],
        wall,
        usage,
        has_workers=True,
        detail=_spark_detail(result, usage),
    )


def _spark_detail(result: dict[str, Any], usage: Usage) -> str:
    """Where the child's time went: its phases, the job's stages, and the CPU each side used."""
    previous, stages = 0.0, []
    for stage, seconds in result["stages"]:
        stages.append(f"{stage} {seconds - previous:.1f}")
        previous = seconds
    clock = result["clock"]
    startup = usage.cpu_between(clock["imported"], clock["warmed"])
    work = usage.cpu_between(clock["warmed"], clock["done"])
    return (
        f"imports {result['imports_s']:.1f} s; start-up: session {result['session_s']:.1f} s + "
        f"first {WARM_ROWS:,}-row run {result['warm_s']:.1f} s, "
        f"CPU {startup[0]:.1f} s driver side, {startup[1]:.1f} s workers; "
        f"job {result['job_s']:.1f} s ({', '.join(stages)}), "
        f"CPU {work[0]:.1f} s driver side, {work[1]:.1f} s workers; stop {result['stop_s']:.1f} s"
    )


def one_core_loop(python: Path, project: Path, data: Path, model: str, rows: int) -> Outcome:
    """One process, one ONNX Runtime thread, over the same data set, with the same writes."""
    output = WORK / "out" / f"{model}-{rows}-loop.parquet"
    (WORK / "baseline.py").write_text(BASELINE)
    command = [str(python), str(WORK / "baseline.py"), str(data), str(output)]
    log = WORK / "logs" / f"{model}-{rows}-loop.log"
    result, wall, usage = child(command, project, log, lambda _pid, _cmdline: False)
    output.unlink(missing_ok=True)
    if result["rows"] != rows:
        raise RuntimeError(f"the loop predicted {result['rows']} of {rows} rows; see {log}")
    detail = (
        f"imports {result['imports_s']:.1f} s, model load {result['load_s']:.2f} s, "
        f"loop {result['loop_s']:.1f} s"
    )
    return Outcome(
        model,
        rows,
        "one-core loop (ORT, 1 thread)",
        result["load_s"],
        result["loop_s"],
        wall,
        usage,
        has_workers=False,
        detail=detail,
    )


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_service(python: Path, project: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """Launch the web-single service by its own run.sh, as a container would run it."""
    env = {
        "PATH": f"{python.parent}:{os.environ['PATH']}",
        "PYTHON": str(python),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKERS": str(SERVICE_WORKERS),
        "MAX_ROWS": str(REQUEST_ROWS),
        "MAX_BODY_BYTES": str(4 * 2**20),
        "LOG_LEVEL": "warning",
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(project / "run.sh")],
            cwd=project,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_ready(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Return once the service's readiness URL answers 200."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:  # refused, reset, or a read timeout while the workers start
            time.sleep(0.02)
    raise RuntimeError(f"the online service did not become ready; see {log}")


def post_all(port: int, bodies: list[bytes]) -> int:
    """Send every body over CLIENTS kept-alive connections at once; the rows answered."""

    def client(share: list[bytes]) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        answered = 0
        try:
            for body in share:
                headers = {"Content-Type": "application/json"}
                connection.request("POST", "/predict", body, headers)
                response = connection.getresponse()
                payload = response.read()
                if response.status != 200:
                    raise RuntimeError(f"POST /predict: {response.status} {payload[:200]!r}")
                answered += len(json.loads(payload)["prediction"])
        finally:
            connection.close()
        return answered

    with ThreadPoolExecutor(CLIENTS) as pool:
        return sum(pool.map(client, [bodies[index::CLIENTS] for index in range(CLIENTS)]))


def online(python: Path, project: Path, bodies: list[bytes], model: str) -> Outcome:
    """The web-single service's answers to ``bodies``, its start-up excluded and included."""
    log = WORK / "logs" / f"{model}-online.log"
    port = free_port()
    began = time.perf_counter()
    process = start_service(python, project, port, log)
    sampler = TreeSampler(process.pid, lambda pid, _cmdline: pid != process.pid)
    sampler.start()
    try:
        wait_ready(process, port, log)
        cold = time.perf_counter() - began
        post_all(port, bodies[: CLIENTS * 2])  # warm-up: every worker has answered
        loaded = time.perf_counter()
        answered = post_all(port, bodies)
        work = time.perf_counter() - loaded
        wall = time.perf_counter() - began
    finally:
        usage = sampler.stop()
        stop_tree(process, sampler)
    return Outcome(
        model,
        answered,
        f"online web-single ({SERVICE_WORKERS} workers, {CLIENTS} clients)",
        cold,
        work,
        wall,
        usage,
        has_workers=True,
        detail=f"service start-up {cold:.1f} s, {len(bodies)} requests in {work:.1f} s",
    )


def versions(python: Path) -> str:
    """The machine and what ran on it, for the record."""
    code = (
        "import onnxruntime, pyarrow, pyspark; "
        "print(f'pyspark {pyspark.__version__}, onnxruntime {onnxruntime.__version__}, "
        "pyarrow {pyarrow.__version__}')"
    )
    found = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=True)
    models = [
        line for line in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line
    ]
    cpu = models[0].split(":", 1)[1].strip() if models else "unknown CPU"
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    tools = f"{found.stdout.strip()}, {java.stderr.splitlines()[0]}"
    return f"{cpu}, {os.cpu_count()} CPUs; {tools}; {now}"


def report(outcomes: list[Outcome]) -> None:
    """The table of every measurement, then the ratios the targets name, then the details."""
    print(
        "Peak RSS, summed over the processes of each side: driver = the Python driver and the JVM "
        "(Spark), the process (loop), gunicorn's master (online); workers = Spark's Python "
        "workers, gunicorn's workers.\n"
    )
    print(
        "| model | rows | approach | rows/s (start-up excluded) | rows/s (with start-up) "
        "| wall s | peak MiB driver | peak MiB workers |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for one in outcomes:
        workers = f"{one.usage.workers_mib:,.0f}" if one.has_workers else "—"
        print(
            f"| {one.model} | {one.rows:,} | {one.approach} | {one.rate:,.0f} "
            f"| {one.rate_with_startup:,.0f} | {one.wall_s:.1f} "
            f"| {one.usage.driver_mib:,.0f} | {workers} |"
        )
    print("\n| ratio (start-up excluded) | rows | value | target |\n|---|---|---|---|")
    for line in ratios(outcomes):
        print(line)
    print("\nWhere the time went (CPU: seconds of the whole child, start-up included):\n")
    for one in outcomes:
        cpu = f"CPU {one.usage.driver_cpu_s:.1f} s driver side"
        if one.has_workers:
            cpu += f", {one.usage.workers_cpu_s:.1f} s workers"
        print(f"- {one.model}, {one.rows:,} rows, {one.approach}: {one.detail}; {cpu}")


def ratios(outcomes: list[Outcome]) -> list[str]:
    """The table rows of the targets: forest job / loop, job / online, memory largest / smallest."""
    jobs = [one for one in outcomes if one.approach.startswith("Spark")]
    loops = {(one.model, one.rows): one for one in outcomes if one.approach.startswith("one-core")}
    online = {one.model: one for one in outcomes if one.approach.startswith("online")}
    lines = []
    for job in jobs:
        loop = loops.get((job.model, job.rows))
        if job.model == "forest" and loop is not None:
            value = job.rate / loop.rate
            lines.append(f"| forest: job / one-core loop | {job.rows:,} | {value:.2f}x | 1.5x |")
    for job in jobs:
        if job.model in online:
            value = job.rate / online[job.model].rate
            lines.append(f"| {job.model}: job / online | {job.rows:,} | {value:.1f}x | 10x |")
    for model in dict.fromkeys(job.model for job in jobs):
        mine = sorted((job for job in jobs if job.model == model), key=lambda job: job.rows)
        small, large = mine[0], mine[-1]
        if large.rows == small.rows:
            continue
        span = f"{large.rows:,} / {small.rows:,}"
        for side in ("driver", "workers"):
            value = getattr(large.usage, f"{side}_mib") / getattr(small.usage, f"{side}_mib")
            lines.append(f"| {model}: job peak MiB, {side} | {span} | {value:.2f}x | flat |")
    return lines


def measure(args: argparse.Namespace, python: Path, projects: dict[str, Projects]) -> list[Outcome]:
    """Every approach for every model, the data sets shared by all."""
    first = projects[args.models[0]].batch
    sizes = sorted({WARM_ROWS, *args.rows})
    print(f"writing data sets of {', '.join(f'{rows:,}' for rows in sizes)} rows", file=sys.stderr)
    data = {rows: sample_data(first, python, rows) for rows in sizes}
    online_rows = min(args.online_rows, *args.rows)
    bodies = online_bodies(first, python, data[min(args.rows)], online_rows)
    outcomes = []
    for model in args.models:
        project = projects[model].batch
        for rows in args.rows:
            print(f"{model}, {rows:,} rows: Spark job", file=sys.stderr)
            outcomes.append(spark_job(python, project, data, model, rows))
            print(f"{model}, {rows:,} rows: one-core loop", file=sys.stderr)
            outcomes.append(one_core_loop(python, project, data[rows], model, rows))
        print(f"{model}, {online_rows:,} rows: online service", file=sys.stderr)
        outcomes.append(online(python, projects[model].online, bodies, model))
    return outcomes


def _exit_on_signal(number: int, _frame: object) -> None:
    raise SystemExit(128 + number)


def main() -> None:
    """Set up, measure, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[2_000_000, 8_000_000])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument(
        "--online-rows", type=int, default=200_000, help="rows sent to the online service"
    )
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so that every child's tree is stopped on the way out.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    for folder in ("logs", "out", "data"):
        (WORK / folder).mkdir(parents=True, exist_ok=True)
    print("generating the projects and their virtualenv", file=sys.stderr)
    projects = {model: generate(model) for model in args.models}
    python = venv(projects[args.models[0]])
    outcomes = measure(args, python, projects)
    print(
        f"\nbatch: same data for all (Parquet, {len(args.rows)} sizes); Spark {MASTER}; "
        f"one-core loop: 10,000-row batches; online: {REQUEST_ROWS:,}-row requests; "
        f"{versions(python)}\n"
    )
    report(outcomes)


if __name__ == "__main__":
    main()
