"""Publishing a run's predictions in PostgreSQL, where applications (and GET /predictions/{id})
read them.

The Python workers copy the run's Parquet partition into a staging table in parallel (COPY, in
CSV made by Arrow); the driver then replaces the run date's rows with the staged ones in one
transaction. A reader sees the previous run or the new one, never a mix; a run killed before
that transaction leaves the table as it was (and its staging table, dropped by the next run).
"""

from __future__ import annotations

import datetime as dt
import functools
import io
from collections.abc import Iterator

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from src.app.predictions import METADATA_COLUMNS, PREDICTION_COLUMNS, TABLE
from src.batch.score import scores_literal
from src.batch.settings import ID_COLUMN, BatchSettings

STAGING_PREFIX = "predictions_staging_"
SCHEMA = sql.SQL(
    """
    CREATE TABLE IF NOT EXISTS {table} (
        id TEXT NOT NULL,
        run_date DATE NOT NULL,
        {columns},
        model_sha256 TEXT NOT NULL,
        model_version TEXT NOT NULL,
        run_id TEXT NOT NULL,
        predicted_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (run_date, id)
    );
    CREATE INDEX IF NOT EXISTS {index} ON {table} (id, run_date DESC);
    """
)
COLUMN_TYPES = {"label": "TEXT", "score": "REAL", "scores": "REAL[]", "value": "DOUBLE PRECISION"}


class LoadError(RuntimeError):
    """The predictions could not be published in PostgreSQL."""


def create_table(connection: psycopg.Connection) -> None:
    """The predictions table and its lookup index, if they do not exist yet."""
    columns = sql.SQL(", ").join(
        sql.SQL("{} {} NOT NULL").format(sql.Identifier(name), sql.SQL(COLUMN_TYPES[name]))
        for name in PREDICTION_COLUMNS
    )
    index = sql.Identifier(f"{TABLE}_id_run_date")
    connection.execute(SCHEMA.format(table=sql.Identifier(TABLE), columns=columns, index=index))


def publish(
    spark: SparkSession, settings: BatchSettings, date: dt.date, run_id: str, expected: int
) -> int:
    """Replace the run date's rows with this run's predictions; the number of rows loaded."""
    url = settings.database_url
    assert url is not None  # the caller loads only when a database is configured
    staging = f"{STAGING_PREFIX}{run_id}"
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as connection:
            create_table(connection)
            _drop_leftovers(connection)
            connection.execute(
                sql.SQL("CREATE UNLOGGED TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(
                    sql.Identifier(staging), sql.Identifier(TABLE)
                )
            )
            try:
                copied = _stage(spark, settings, date, url, staging)
                if copied != expected:
                    raise LoadError(f"staged {copied} rows of the {expected} predicted")
                _swap(connection, staging, date)
            finally:
                connection.execute(
                    sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(staging))
                )
    except psycopg.Error as err:
        raise LoadError(f"DATABASE_URL: {_first_line(err)}") from err
    return copied


def _drop_leftovers(connection: psycopg.Connection) -> None:
    """Staging tables of runs that were killed before they dropped theirs."""
    rows = connection.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
        "AND starts_with(tablename, %s)",
        (STAGING_PREFIX,),
    ).fetchall()
    for (name,) in rows:
        connection.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


def _stage(
    spark: SparkSession, settings: BatchSettings, date: dt.date, url: str, staging: str
) -> int:
    partition = spark.read.parquet(settings.predictions_uri).where(F.col("run_date") == F.lit(date))
    columns = [ID_COLUMN, "run_date", *PREDICTION_COLUMNS, *METADATA_COLUMNS]
    copy = functools.partial(copy_batches, url=url, table=staging)
    counted = partition.select(*columns).mapInArrow(copy, "rows long")
    total = counted.agg(F.sum("rows")).first()
    return int(total[0] or 0) if total else 0


def copy_batches(
    batches: Iterator[pa.RecordBatch], url: str, table: str
) -> Iterator[pa.RecordBatch]:
    """COPY a partition's batches into ``table`` over one connection; yields the row count."""
    rows = 0
    with psycopg.connect(url, connect_timeout=10) as connection, connection.cursor() as cursor:
        statement = sql.SQL("COPY {} FROM STDIN (FORMAT csv)").format(sql.Identifier(table))
        with cursor.copy(statement) as copy:
            for batch in batches:
                copy.write(as_csv(batch))
                rows += batch.num_rows
    yield pa.RecordBatch.from_arrays([pa.array([rows], type=pa.int64())], names=["rows"])


def as_csv(batch: pa.RecordBatch) -> bytes:
    """A batch as CSV rows in the table's column order (array columns as array literals)."""
    arrays = [
        scores_literal(column) if pa.types.is_list(column.type) else column
        for column in batch.columns
    ]
    table = pa.Table.from_arrays(arrays, names=batch.schema.names)
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False))
    return buffer.getvalue()


def _swap(connection: psycopg.Connection, staging: str, date: dt.date) -> None:
    with connection.transaction():
        connection.execute(
            sql.SQL("DELETE FROM {} WHERE run_date = %s").format(sql.Identifier(TABLE)), (date,)
        )
        connection.execute(
            sql.SQL("INSERT INTO {} SELECT * FROM {}").format(
                sql.Identifier(TABLE), sql.Identifier(staging)
            )
        )


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
