"""Publishing in a real PostgreSQL: every prediction once, replaced per run date in one go."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from pyspark.sql import SparkSession

from src.batch import job, load
from src.batch.settings import BatchSettings
from tests.batch.conftest import RUN_DATE

MakeSettings = Callable[..., BatchSettings]


def rows_by_date(url: str) -> dict[dt.date, tuple[int, int, set[str]]]:
    """run_date → (rows, distinct ids, run ids) in the predictions table."""
    with psycopg.connect(url) as connection:
        found = connection.execute(
            "SELECT run_date, count(*), count(DISTINCT id), array_agg(DISTINCT run_id) "
            "FROM predictions GROUP BY run_date"
        ).fetchall()
    return {date: (rows, ids, set(runs)) for date, rows, ids, runs in found}


def test_a_run_publishes_every_prediction_once(
    spark: SparkSession, sample_input: Path, clean_database: str, make_settings: MakeSettings
) -> None:
    settings = make_settings(sample_input, clean_database)
    report = job.run_date(spark, settings, RUN_DATE)
    assert report.rows_loaded == report.rows_predicted
    rows, ids, runs = rows_by_date(clean_database)[RUN_DATE]
    assert rows == ids == report.rows_predicted
    assert runs == {report.run_id}


def test_a_rerun_replaces_its_date_and_leaves_the_others(
    spark: SparkSession, sample_input: Path, clean_database: str, make_settings: MakeSettings
) -> None:
    settings = make_settings(sample_input, clean_database)
    other = RUN_DATE + dt.timedelta(days=1)
    kept = job.run_date(spark, settings, other)
    job.run_date(spark, settings, RUN_DATE)
    again = job.run_date(spark, settings, RUN_DATE)
    published = rows_by_date(clean_database)
    assert published[RUN_DATE] == (again.rows_predicted, again.rows_predicted, {again.run_id})
    assert published[other][2] == {kept.run_id}


def test_a_killed_runs_staging_table_is_dropped_by_the_next_run(
    spark: SparkSession, sample_input: Path, clean_database: str, make_settings: MakeSettings
) -> None:
    with psycopg.connect(clean_database, autocommit=True) as connection:
        load.create_table(connection)
        connection.execute(
            f"CREATE TABLE {load.STAGING_PREFIX}deadbeef (LIKE predictions INCLUDING DEFAULTS)"
        )
    job.run_date(spark, make_settings(sample_input, clean_database), RUN_DATE)
    with psycopg.connect(clean_database) as connection:
        left = connection.execute(
            "SELECT count(*) FROM pg_tables WHERE starts_with(tablename, %s)",
            (load.STAGING_PREFIX,),
        ).fetchone()
    assert left == (0,)


def test_an_unreachable_database_is_a_load_error_naming_it(
    spark: SparkSession, sample_input: Path, make_settings: MakeSettings
) -> None:
    settings = make_settings(sample_input, "postgresql://nobody:secret@127.0.0.1:9/none")
    with pytest.raises(load.LoadError, match="DATABASE_URL") as caught:
        job.run_date(spark, settings, RUN_DATE)
    assert "secret" not in str(caught.value)
