"""``python -m src.batch`` as a scheduler runs it: exit statuses, metrics, and a run killed half
way then run again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pyarrow.dataset as ds

from src.batch.settings import EXIT_TOO_MANY_REJECTS, EXIT_USAGE, ID_COLUMN
from tests.batch.conftest import PROJECT, RUN_DATE, SAMPLE_ROWS

DATE = RUN_DATE.isoformat()


def command(input_uri: Path, output: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "src.batch", "--date", DATE, "--master", "local[2]",
        "--input", str(input_uri), "--output", str(output), *extra,
    ]  # fmt: skip


def environment(**values: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    return {**env, "PYSPARK_PYTHON": sys.executable, **values}


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=PROJECT, env=environment(**env), capture_output=True, text=True, timeout=600
    )


def stages(stdout: str) -> list[str]:
    """The stages the job logged (one JSON line each)."""
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [line["stage"] for line in lines if "stage" in line]


def test_a_run_logs_its_stages_and_writes_its_metrics(sample_input: Path, tmp_path: Path) -> None:
    metrics = tmp_path / "metrics" / "batch.prom"
    done = run(command(sample_input, tmp_path / "out"), METRICS_FILE=str(metrics))
    assert done.returncode == 0, done.stderr[-3000:]
    assert stages(done.stdout) == ["checked", "rejects written", "predictions written"]
    text = metrics.read_text()
    bad = SAMPLE_ROWS // 1000
    assert f'batch_rows_read{{run_date="{DATE}"}} {float(SAMPLE_ROWS)}' in text
    assert f'batch_rows_rejected{{run_date="{DATE}"}} {float(bad)}' in text
    assert "batch_last_success_timestamp_seconds " in text


def test_too_many_rejects_exit_3_and_bad_settings_exit_2(
    sample_input: Path, tmp_path: Path
) -> None:
    strict = run(command(sample_input, tmp_path / "out", "--max-reject-ratio", "0"))
    assert strict.returncode == EXIT_TOO_MANY_REJECTS, strict.stderr[-3000:]
    assert "nothing published" in strict.stdout
    usage = run(command(sample_input, tmp_path / "out", "--format", "xml"))
    assert usage.returncode == EXIT_USAGE
    assert "--format 'xml'" in usage.stderr


def published_ids(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as connection:
        found = connection.execute(
            "SELECT count(*), count(DISTINCT id) FROM predictions WHERE run_date = %s", (RUN_DATE,)
        ).fetchone()
    assert found is not None
    return found[0], found[1]


def test_a_run_killed_half_way_and_run_again_leaves_one_copy_of_each_prediction(
    sample_input: Path, tmp_path: Path, clean_database: str
) -> None:
    output = tmp_path / "out"
    args = command(sample_input, output)
    env = environment(DATABASE_URL=clean_database)
    # The whole process group, as a node losing the pod would: driver, JVM and Python workers.
    with subprocess.Popen(
        args, cwd=PROJECT, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
    ) as victim:
        assert victim.stdout is not None
        for line in victim.stdout:
            if '"stage":"rejects written"' in line:
                break
        time.sleep(1.5)
        os.killpg(victim.pid, signal.SIGKILL)
    again = run(args, DATABASE_URL=clean_database)
    assert again.returncode == 0, again.stderr[-3000:]
    predicted = SAMPLE_ROWS - SAMPLE_ROWS // 1000
    table = ds.dataset(output / "predictions", format="parquet", partitioning="hive").to_table()
    ids = table.column(ID_COLUMN).to_pylist()
    assert len(ids) == len(set(ids)) == predicted
    assert published_ids(clean_database) == (predicted, predicted)
