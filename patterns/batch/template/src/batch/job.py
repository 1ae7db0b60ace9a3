"""The Spark job: read a data set, set bad rows aside, score the rest, write and publish.

One run per date. A run first checks every row of its input in Spark SQL (missing values, values
of the wrong type, NaN and infinities) and counts the rejected ones; that pass builds no reason
and no JSON, so it costs little next to scoring. It then writes the rejects with their reason,
refuses to go on when too many rows were rejected, and only then scores and writes the
predictions. Both data sets are partitioned by ``run_date`` and written with dynamic partition
overwrite: a run replaces its own date's partition and nothing else, and a run killed half way
leaves the previous partition as it was (Spark moves the new files in when the job commits).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pyspark import SparkConf, SparkContext, TaskContext
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from src.app import config
from src.batch import load
from src.batch.model import JobModel, own
from src.batch.score import ModelSpec, output_schema, score_batches
from src.batch.settings import (
    COLUMN_TYPES,
    ID_COLUMN,
    INPUT_COLUMNS,
    ROW_SHAPES,
    BatchSettings,
)

logger = logging.getLogger("src.batch")
FLOAT_TYPES = ("float", "double")
# Spark's defaults tuned for one model call per Arrow batch on a few cores: partitions of 16 MB
# give every core several tasks (two big ones leave a core idle at the end), and batches of 10,000
# rows amortise the call into ONNX Runtime.
SPARK_DEFAULTS = {
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.files.maxPartitionBytes": str(16 * 1024 * 1024),
    "spark.sql.execution.arrow.maxRecordsPerBatch": "10000",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}


class TooManyRejectsError(RuntimeError):
    """A run rejected more than MAX_REJECT_RATIO of its rows (or its input had none)."""


@dataclass(frozen=True)
class RunReport:
    """What one run did."""

    date: dt.date
    run_id: str
    rows_read: int
    rows_predicted: int
    rows_rejected: int
    rows_loaded: int | None
    seconds: float


def session(settings: BatchSettings) -> SparkSession:
    """The Spark session; its Python workers run this interpreter (the project's venv).

    The master is SPARK_MASTER (or --master) if given, else spark-defaults.conf's (in
    SPARK_CONF_DIR, as on Kubernetes), else every core of this machine.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    # Starts the JVM, which reads spark-defaults.conf, so that SparkConf sees what it sets. The
    # SPARK_CONF_* settings go on its command line too: the driver's memory (spark.driver.memory,
    # Spark's default 1g) can only be set there.
    launch = SparkConf(loadDefaults=False).setAll(list(settings.spark_conf.items()))
    SparkContext._ensure_initialized(conf=launch)
    conf = SparkConf().setAppName(config.SERVICE_NAME)
    if settings.master:
        conf.setMaster(settings.master)
    elif not conf.contains("spark.master"):
        conf.setMaster("local[*]")
    for key, value in SPARK_DEFAULTS.items():
        if not conf.contains(key):
            conf.set(key, value)
    if (conf.get("spark.master") or "").startswith("local"):
        conf.set("spark.ui.enabled", "false")
    conf.setAll(list(settings.spark_conf.items()))
    spark = SparkSession.builder.config(conf=conf).getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def read_input(spark: SparkSession, settings: BatchSettings, date: dt.date) -> DataFrame:
    """The run's input data set."""
    uri = settings.input_for(date)
    if settings.input_format == "csv":
        return spark.read.option("header", "true").csv(uri)
    if settings.input_format == "jsonl":
        return spark.read.json(uri)
    return spark.read.parquet(uri)


def checked(frame: DataFrame) -> DataFrame:
    """The id, every input column cast to its type, ``_good`` (the row can be scored),
    ``_reason`` (why not) and ``_row`` (the row as the input had it, as JSON, for the rejects).

    ``_good`` is a plain boolean so that scoring a row costs no string building: Spark computes
    ``_reason`` and ``_row`` only for the rows that go to the rejects.
    """
    present = set(frame.columns)
    missing = [name for name in [ID_COLUMN, *COLUMN_TYPES] if name not in present]
    if missing:
        logger.warning(
            "columns missing from the input: every row is rejected",
            extra={"fields": {"columns": ",".join(missing)}},
        )
    problems = [_problem(ID_COLUMN, frame, None)]
    typed = []
    good = F.col(ID_COLUMN).isNotNull() if ID_COLUMN in present else F.lit(False)
    for name, spark_type in COLUMN_TYPES.items():
        problems.append(_problem(name, frame, spark_type))
        value = _typed(name, frame, spark_type)
        typed.append(value.alias(name))
        good = good & _usable(value, spark_type)
    reason = F.concat_ws("; ", *problems)
    original = [F.col(name) for name in frame.columns]
    row = F.to_json(F.struct(*original)) if original else F.lit("{}")
    identity = F.col(ID_COLUMN) if ID_COLUMN in present else F.lit(None)
    return frame.select(
        identity.alias(ID_COLUMN),
        *typed,
        good.alias("_good"),
        reason.alias("_reason"),
        row.alias("_row"),
    )


def _usable(value: Column, spark_type: str) -> Column:
    """Whether a typed value can be scored: present, and finite for a float."""
    if spark_type in FLOAT_TYPES:
        return value.isNotNull() & ~F.isnan(value) & (F.abs(value) != F.lit(float("inf")))
    return value.isNotNull()


def _typed(name: str, frame: DataFrame, spark_type: str) -> Column:
    if name not in frame.columns:
        return F.lit(None).cast(spark_type)
    return F.col(name).try_cast(spark_type)


def _problem(name: str, frame: DataFrame, spark_type: str | None) -> Column:
    """A row's problem with column ``name``, or null."""
    if name not in frame.columns:
        return F.lit(f"{name}: missing")
    raw = F.col(name)
    problem = F.when(raw.isNull(), F.lit(f"{name}: missing"))
    if spark_type is None:
        return problem
    typed = raw.try_cast(spark_type)
    problem = problem.when(typed.isNull(), F.lit(f"{name}: not a {spark_type}"))
    if spark_type in FLOAT_TYPES:
        infinite = F.abs(typed) == F.lit(float("inf"))
        problem = problem.when(F.isnan(typed) | infinite, F.lit(f"{name}: not a finite number"))
    return problem


def model_spec(model: JobModel) -> ModelSpec:
    """The model as the Python workers load it (the labels are the online service's)."""
    settings = config.Settings.from_env()
    return ModelSpec(
        model_path=str(model.path),
        label_path=str(settings.label_filepath),
        output_name=config.OUTPUT_NAME,
        task=config.TASK,
        id_column=ID_COLUMN,
        input_columns=INPUT_COLUMNS,
        row_shapes=ROW_SHAPES,
        sha256=model.sha256,
        shipped=model.shipped,
    )


def _score_partition(batches: Any, spec: ModelSpec) -> Any:
    context = TaskContext.get()
    threads = context.cpus() if context is not None else 1
    return score_batches(batches, spec, threads)


def run_date(
    spark: SparkSession, settings: BatchSettings, date: dt.date, model: JobModel | None = None
) -> RunReport:
    """One run: check, write the rejects, score and write the predictions, load the database.

    ``model`` is the one :func:`src.batch.model.resolve` gave (shipped to the executors); the
    project's own model when omitted.
    """
    began = time.monotonic()
    run_id = uuid.uuid4().hex
    fields = {"run_id": run_id, "run_date": date.isoformat()}
    rows = checked(read_input(spark, settings, date))
    counts = rows.agg(
        F.count(F.lit(1)).alias("read"), F.count_if(~F.col("_good")).alias("rejected")
    )
    read, rejected = counts.first() or (0, 0)
    _stage("checked", fields, began, rows_read=read, rows_rejected=rejected)
    _write_rejects(spark, settings, rows, date, run_id, rejected)
    _stage("rejects written", fields, began, rows_rejected=rejected)
    if read == 0:
        raise TooManyRejectsError(f"{settings.input_for(date)}: the input holds no rows")
    if rejected / read > settings.max_reject_ratio:
        raise TooManyRejectsError(
            f"{rejected} of {read} rows rejected ({rejected / read:.2%}), over "
            f"MAX_REJECT_RATIO {settings.max_reject_ratio:g}: nothing published for {date}; "
            f"the reasons are in {settings.rejects_uri}/run_date={date}"
        )
    _write_predictions(rows, settings, date, run_id, model or own())
    predicted = read - rejected
    _stage("predictions written", fields, began, rows_predicted=predicted)
    loaded = None
    if settings.database_url:
        loaded = load.publish(spark, settings, date, run_id, predicted)
        _stage("loaded into PostgreSQL", fields, began, rows_loaded=loaded)
    else:
        logger.info("DATABASE_URL is not set: the predictions are in Parquet only")
    return RunReport(date, run_id, read, predicted, rejected, loaded, time.monotonic() - began)


def _write_predictions(
    rows: DataFrame, settings: BatchSettings, date: dt.date, run_id: str, model: JobModel
) -> None:
    spec = model_spec(model)
    good = rows.where(F.col("_good")).select(ID_COLUMN, *COLUMN_TYPES)
    id_type = good.schema[ID_COLUMN].dataType.simpleString()
    schema = f"{ID_COLUMN} {id_type}, {output_schema(spec.task)}"
    scored = good.mapInArrow(functools.partial(_score_partition, spec=spec), schema)
    stamped = scored.withColumns(
        {
            "model_sha256": F.lit(model.sha256),
            "model_version": F.lit(settings.model_version),
            "run_id": F.lit(run_id),
            "predicted_at": F.current_timestamp(),
            "run_date": F.lit(date),
        }
    )
    stamped.write.mode("overwrite").partitionBy("run_date").parquet(settings.predictions_uri)


def _write_rejects(
    spark: SparkSession,
    settings: BatchSettings,
    rows: DataFrame,
    date: dt.date,
    run_id: str,
    rejected: int,
) -> None:
    if rejected == 0:
        # Dynamic overwrite replaces only the partitions it writes: an earlier run's rejects of
        # this date are removed by hand.
        _delete(spark, f"{settings.rejects_uri}/run_date={date.isoformat()}")
        return
    rejects = rows.where(~F.col("_good")).select(
        F.col(ID_COLUMN).cast("string").alias(ID_COLUMN),
        F.col("_reason").alias("reason"),
        F.col("_row").alias("row"),
        F.lit(run_id).alias("run_id"),
        F.lit(date).alias("run_date"),
    )
    rejects.write.mode("overwrite").partitionBy("run_date").parquet(settings.rejects_uri)


def _delete(spark: SparkSession, uri: str) -> None:
    """Delete a folder through Hadoop's file systems (local, s3a://, ...) if it exists."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None  # the driver always has its JVM
    path = jvm.org.apache.hadoop.fs.Path(uri)
    path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).delete(path, True)


def _stage(stage: str, fields: dict[str, str], began: float, **counts: int) -> None:
    seconds = round(time.monotonic() - began, 3)
    logger.info(stage, extra={"fields": {**fields, "stage": stage, **counts, "seconds": seconds}})
