"""The Spark job over real data: one prediction per good row, rejects with reasons, re-runs.

Spark runs for real (local[2]); the model is the project's own, as the online service loads it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from src.app.config import MODEL_SHA256, OUTPUT_NAME, TASK, Settings
from src.batch import job
from src.batch.settings import COLUMN_TYPES, ID_COLUMN, INPUT_COLUMNS, BatchSettings, sample_row
from src.ml.classifier import Classifier
from tests.batch.conftest import RUN_DATE, SAMPLE_ROWS

MakeSettings = Callable[..., BatchSettings]
FIRST = next(iter(COLUMN_TYPES))


def partition(uri: str, date: dt.date = RUN_DATE) -> pa.Table:
    """One run date's rows of a data set the job wrote."""
    return ds.dataset(f"{uri}/run_date={date.isoformat()}", format="parquet").to_table()


def test_every_good_row_gets_exactly_one_prediction(
    spark: SparkSession, sample_input: Path, make_settings: MakeSettings
) -> None:
    settings = make_settings(sample_input)
    report = job.run_date(spark, settings, RUN_DATE)
    bad = SAMPLE_ROWS // 1000
    assert (report.rows_read, report.rows_rejected) == (SAMPLE_ROWS, bad)
    assert report.rows_predicted == SAMPLE_ROWS - bad
    predictions = partition(settings.predictions_uri)
    ids = predictions.column(ID_COLUMN).to_pylist()
    assert len(ids) == len(set(ids)) == SAMPLE_ROWS - bad
    assert set(predictions.column("model_sha256").to_pylist()) == {MODEL_SHA256}
    assert set(predictions.column("run_id").to_pylist()) == {report.run_id}
    rejects = partition(settings.rejects_uri)
    assert rejects.num_rows == bad
    assert set(rejects.column("reason").to_pylist()) == {f"{FIRST}: missing"}


def online_model() -> Classifier:
    """The model as the online service loads it."""
    settings = Settings.from_env()
    return Classifier.load(settings.model_filepath, settings.label_filepath, OUTPUT_NAME, 1, TASK)


def online_labels() -> list[str]:
    return online_model().labels


def online_answers(rows: list[dict[str, Any]]) -> np.ndarray:
    """What the online service's model code answers for data set rows."""
    model = online_model()
    feeds = {
        name: np.asarray([[row[column] for column in columns] for row in rows])
        .astype(dtype)
        .reshape(len(rows), *model.metadata()["inputs"][index]["shape"][1:])
        for index, ((name, columns), dtype) in enumerate(
            zip(INPUT_COLUMNS.items(), model.input_dtypes, strict=True)
        )
    }
    return np.asarray(model.predict_feeds(feeds))


def test_the_job_answers_as_the_online_model_does(
    spark: SparkSession, sample_input: Path, make_settings: MakeSettings
) -> None:
    settings = make_settings(sample_input)
    job.run_date(spark, settings, RUN_DATE)
    predictions = partition(settings.predictions_uri).sort_by(ID_COLUMN).slice(0, 200)
    wanted = set(predictions.column(ID_COLUMN).to_pylist())
    source = ds.dataset(sample_input, format="parquet").to_table()
    rows = [row for row in source.to_pylist() if row[ID_COLUMN] in wanted]
    rows.sort(key=lambda row: row[ID_COLUMN])
    online = online_answers(rows)
    batch = np.asarray(predictions.column("scores").to_pylist())
    assert np.allclose(batch, online, rtol=1e-4, atol=1e-5)
    labels = online_labels()
    assert predictions.column("label").to_pylist() == [labels[i] for i in online.argmax(axis=1)]


def test_a_rerun_replaces_its_own_date_and_nothing_else(
    spark: SparkSession, sample_input: Path, make_settings: MakeSettings
) -> None:
    settings = make_settings(sample_input)
    other = RUN_DATE - dt.timedelta(days=1)
    first = job.run_date(spark, settings, RUN_DATE)
    kept = job.run_date(spark, settings, other)
    again = job.run_date(spark, settings, RUN_DATE)
    rerun = partition(settings.predictions_uri)
    assert set(rerun.column("run_id").to_pylist()) == {again.run_id} != {first.run_id}
    assert rerun.num_rows == again.rows_predicted
    untouched = partition(settings.predictions_uri, other)
    assert set(untouched.column("run_id").to_pylist()) == {kept.run_id}


def write_jsonl(folder: Path, rows: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def good_row(row_id: int) -> dict[str, Any]:
    """A row whose every value is the sample row's."""
    return {ID_COLUMN: row_id, **sample_row()}


def test_bad_rows_are_set_aside_with_their_reason(
    spark: SparkSession, tmp_path: Path, make_settings: MakeSettings
) -> None:
    rows = [good_row(index) for index in range(10)]
    rows[1][FIRST] = None
    rows[2][FIRST] = "not a value"
    del rows[3][ID_COLUMN]
    rows[4][FIRST] = "NaN"
    rows[5][FIRST] = "Infinity"
    settings = make_settings(
        write_jsonl(tmp_path / "in", rows), format="jsonl", max_reject_ratio="1"
    )
    report = job.run_date(spark, settings, RUN_DATE)
    reasons = dict(
        zip(
            partition(settings.rejects_uri).column("row").to_pylist(),
            partition(settings.rejects_uri).column("reason").to_pylist(),
            strict=True,
        )
    )
    found = sorted(reasons.values())
    expected = [
        f"{FIRST}: missing",
        f"{FIRST}: not a {COLUMN_TYPES[FIRST]}",
        f"{ID_COLUMN}: missing",
    ]
    expected += [f"{FIRST}: not a finite number"] * 2
    assert found == sorted(expected)
    assert report.rows_predicted == len(rows) - len(expected)
    assert partition(settings.predictions_uri).num_rows == report.rows_predicted


def test_a_column_missing_from_the_input_rejects_every_row(
    spark: SparkSession, tmp_path: Path, make_settings: MakeSettings
) -> None:
    rows = [good_row(index) for index in range(5)]
    for row in rows:
        del row[FIRST]
    settings = make_settings(write_jsonl(tmp_path / "in", rows), format="jsonl")
    with pytest.raises(job.TooManyRejectsError, match="5 of 5 rows rejected"):
        job.run_date(spark, settings, RUN_DATE)
    assert partition(settings.rejects_uri).num_rows == 5


def test_too_many_rejects_fail_the_run_and_keep_the_last_good_partition(
    spark: SparkSession, sample_input: Path, tmp_path: Path, make_settings: MakeSettings
) -> None:
    settings = make_settings(sample_input)
    good = job.run_date(spark, settings, RUN_DATE)
    strict = dataclasses.replace(settings, max_reject_ratio=0.0)
    with pytest.raises(job.TooManyRejectsError, match="nothing published"):
        job.run_date(spark, strict, RUN_DATE)
    assert set(partition(settings.predictions_uri).column("run_id").to_pylist()) == {good.run_id}


def test_csv_input_is_read_and_cast(
    spark: SparkSession, tmp_path: Path, make_settings: MakeSettings
) -> None:
    rows = [good_row(index) for index in range(20)]
    table = pa.Table.from_pylist(rows)
    folder = tmp_path / "csv"
    folder.mkdir()
    pacsv.write_csv(table, folder / "rows.csv")
    settings = make_settings(folder, format="csv")
    report = job.run_date(spark, settings, RUN_DATE)
    assert (report.rows_predicted, report.rows_rejected) == (20, 0)


def test_a_date_in_the_input_uri_reads_that_dates_folder(
    spark: SparkSession, tmp_path: Path, make_settings: MakeSettings
) -> None:
    for day, count in ((RUN_DATE, 3), (RUN_DATE + dt.timedelta(days=1), 7)):
        folder = tmp_path / "daily" / day.isoformat()
        folder.mkdir(parents=True)
        pq.write_table(
            pa.Table.from_pylist([good_row(i) for i in range(count)]), folder / "p.parquet"
        )
    settings = make_settings(tmp_path / "daily" / "{date}")
    assert job.run_date(spark, settings, RUN_DATE).rows_predicted == 3
    assert job.run_date(spark, settings, RUN_DATE + dt.timedelta(days=1)).rows_predicted == 7
