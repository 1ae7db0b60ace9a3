"""The batch pattern end to end, as a user runs it: ``make batch`` on a generated project, then the
service started by its own run.sh answering ``GET /predictions/{id}`` from what the job published
in a real PostgreSQL.

The generated project's own tests (tests/batch/, run by test_service.py) cover the job in depth:
rejects, re-runs, the kill test, the load. Spark needs Java 17+ (the machine's), PostgreSQL
Debian's server binaries (scripts/system-deps.sh installs both when missing).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from live import Stack, call, postgres_server, running

from builder_core import build
from builder_core.patterns import load_pattern

pytestmark = pytest.mark.slow
DATE = "2026-01-15"
SAMPLE_ROWS = 200_000
BAD_EVERY = 1_000


def make(project: Path, python: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``make`` in the project with the service venv as its ``.venv`` (never rebuilt: -o)."""
    venv = python.parent.parent
    command = ["make", "-o", str(python), f"VENV={venv}", *args]
    return subprocess.run(
        command,
        cwd=project,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def partition(python: Path, folder: Path) -> dict[str, int]:
    """Rows, distinct ids and distinct run ids of a partition the job wrote (read by the
    project's own Python: pyarrow is the job's dependency, not the test suite's)."""
    script = (
        "import json, sys, pyarrow.dataset as ds; t = ds.dataset(sys.argv[1]).to_table(); "
        "print(json.dumps({'rows': t.num_rows, 'ids': len(set(t.column('id').to_pylist())), "
        "'runs': len(set(t.column('run_id').to_pylist()))}))"
    )
    done = subprocess.run(
        [str(python), "-c", script, str(folder)], capture_output=True, text=True, check=True
    )
    counts: dict[str, int] = json.loads(done.stdout)
    return counts


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory, service_python: Callable[[Path], Path]
) -> tuple[Path, Path]:
    """A fresh project (not the session's shared one: make writes data/ into it)."""
    target = build(pattern="batch", name="scores", output_dir=tmp_path_factory.mktemp("b")).target
    return target, service_python(target)


@pytest.fixture(scope="module")
def published(project: tuple[Path, Path], database: str) -> subprocess.CompletedProcess[str]:
    """``make batch`` once, publishing in the database."""
    folder, python = project
    return make(folder, python, "batch", f"DATE={DATE}", DATABASE_URL=database)


def test_make_batch_scores_the_sample_data_set(
    project: tuple[Path, Path], published: subprocess.CompletedProcess[str]
) -> None:
    assert published.returncode == 0, published.stdout[-3000:] + published.stderr[-3000:]
    folder, python = project
    rows = SAMPLE_ROWS - SAMPLE_ROWS // BAD_EVERY
    predictions = partition(python, folder / f"data/output/predictions/run_date={DATE}")
    assert predictions == {"rows": rows, "ids": rows, "runs": 1}
    rejects = partition(python, folder / f"data/output/rejects/run_date={DATE}")
    assert rejects["rows"] == SAMPLE_ROWS // BAD_EVERY


def test_a_second_make_batch_replaces_the_date(
    project: tuple[Path, Path], published: subprocess.CompletedProcess[str], database: str
) -> None:
    folder, python = project
    again = make(folder, python, "batch", f"DATE={DATE}", DATABASE_URL=database)
    assert again.returncode == 0, again.stderr[-3000:]
    rows = SAMPLE_ROWS - SAMPLE_ROWS // BAD_EVERY
    predictions = partition(python, folder / f"data/output/predictions/run_date={DATE}")
    assert predictions == {"rows": rows, "ids": rows, "runs": 1}


@pytest.fixture(scope="module")
def service(
    project: tuple[Path, Path],
    published: subprocess.CompletedProcess[str],
    database: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    folder, python = project
    info = load_pattern("batch").info
    env = {"DATABASE_URL": database}
    with running(folder, python, info, tmp_path_factory.mktemp("svc"), env=env) as stack:
        yield stack


def test_the_service_answers_a_published_prediction_over_http(service: Stack) -> None:
    status, answer = call(f"{service.base}/predictions/0")
    assert status == 200, answer
    assert answer["run_date"] == DATE
    assert answer["label"] in call(f"{service.base}/label")[1].values()
    _, meta = call(f"{service.base}/metadata")
    assert answer["model_sha256"] == meta["model_sha256"]
    assert call(f"{service.base}/predictions/{BAD_EVERY - 1}")[0] == 404


def test_the_same_model_still_answers_online(service: Stack) -> None:
    status, answer = call(f"{service.base}/predict/test")
    assert status == 200, answer
