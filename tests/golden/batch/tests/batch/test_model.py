"""The model a run scores with: fetched from MODEL_URI and checked, or refused; and the job under
spark-submit, with the driver's memory it is given."""

from __future__ import annotations

import hashlib
import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from src.app.config import MODEL_FILE_NAME, MODEL_SHA256, Settings
from src.batch.settings import EXIT_MODEL_FAILED, EXIT_USAGE
from tests.batch.conftest import PROJECT, SAMPLE_ROWS
from tests.batch.test_cli import DATE, command, environment, run

PREDICTED = SAMPLE_ROWS - SAMPLE_ROWS // 1000


def predictions(output: Path) -> ds.Dataset:
    return ds.dataset(output / "predictions", format="parquet", partitioning="hive")


@pytest.fixture
def other_model(tmp_path: Path) -> tuple[Path, str]:
    """The project's model with another doc_string: the same answers, a sha256 of its own.

    Field 6 of an ONNX ModelProto is its doc_string; protobuf keeps the last occurrence of a
    field, so appending one is a valid model that differs in its bytes only.
    """
    doc = b"retrained"
    data = Settings.from_env().model_filepath.read_bytes() + bytes([6 << 3 | 2, len(doc)]) + doc
    folder = tmp_path / "store"
    folder.mkdir()
    (folder / MODEL_FILE_NAME).write_bytes(data)
    return folder, hashlib.sha256(data).hexdigest()


@pytest.fixture
def model_store(other_model: tuple[Path, str]) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving the other model; its URL."""
    folder, _ = other_model
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{MODEL_FILE_NAME}"
    server.shutdown()
    server.server_close()


def test_a_model_from_model_uri_is_fetched_checked_and_named_in_every_prediction(
    sample_input: Path, tmp_path: Path, model_store: str, other_model: tuple[Path, str]
) -> None:
    _, sha256 = other_model
    assert sha256 != MODEL_SHA256
    output = tmp_path / "out"
    done = run(command(sample_input, output), MODEL_URI=model_store, MODEL_SHA256=sha256)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"sha256 {sha256} verified" in done.stdout
    table = predictions(output).to_table()
    assert table.num_rows == PREDICTED
    assert set(table.column("model_sha256").to_pylist()) == {sha256}


def test_a_model_that_is_not_the_one_model_sha256_names_is_refused_before_anything_runs(
    sample_input: Path, tmp_path: Path, model_store: str
) -> None:
    output = tmp_path / "out"
    metrics = tmp_path / "batch.prom"
    refused = run(
        command(sample_input, output),
        MODEL_URI=model_store,
        MODEL_SHA256=MODEL_SHA256,
        METRICS_FILE=str(metrics),
    )
    assert refused.returncode == EXIT_MODEL_FAILED
    assert "checksum mismatch" in refused.stdout
    assert not output.exists()
    # A failed job: the metrics say no run succeeded.
    assert "batch_last_success_timestamp_seconds" not in metrics.read_text()
    missing = run(command(sample_input, output), MODEL_URI=model_store + ".gone")
    assert missing.returncode == EXIT_MODEL_FAILED
    assert "not found" in missing.stdout
    malformed = run(command(sample_input, output), MODEL_URI=model_store, MODEL_SHA256="abc")
    assert malformed.returncode == EXIT_USAGE
    assert "MODEL_SHA256='abc'" in malformed.stderr
    assert not output.exists()


def test_spark_submit_runs_the_same_job(sample_input: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    submit = Path(sys.executable).parent / "spark-submit"
    args = [str(submit), "--master", "local[2]", "batch_job.py", *command(sample_input, output)[3:]]
    done = run(args, PYSPARK_DRIVER_PYTHON=sys.executable)
    assert done.returncode == 0, done.stderr[-3000:]
    assert predictions(output).count_rows(filter=ds.field("run_date") == DATE) == PREDICTED


def test_spark_driver_memory_sets_the_drivers_heap() -> None:
    probe = (
        "from src.batch import job; from src.batch.settings import build_settings, defaults;"
        "import datetime as dt;"
        "spark = job.session(build_settings(defaults(), [dt.date.today()]));"
        "print(spark.sparkContext._jvm.java.lang.Runtime.getRuntime().maxMemory());"
        "spark.stop()"
    )
    heaps: dict[str, int] = {}
    for memory in ("600m", "900m"):
        done = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=PROJECT,
            env=environment(SPARK_CONF_DRIVER_MEMORY=f"spark.driver.memory={memory}"),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        heaps[memory] = int(done.stdout.split()[-1])
    # The JVM's maximum heap is a little under -Xmx (a survivor space is not counted).
    assert 400 * 2**20 < heaps["600m"] <= 600 * 2**20 < heaps["900m"] <= 900 * 2**20
