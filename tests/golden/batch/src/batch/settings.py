"""What the batch job reads and writes, from the environment and the command line.

The data set has the column ``id`` and one column per value of the model's input
rows: a column named after the input when a row holds one value, else ``<input>_0`` to
``<input>_<n-1>`` in the row's (flattened) order.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from src.app.config import DATA_SAMPLE, PROJECT_ROOT, SERVICE_VERSION, database_url

ID_COLUMN = "id"
# Model input → its columns in the data set, and the shape of one row of it.
INPUT_COLUMNS: dict[str, list[str]] = {
    "input": ["input_0", "input_1", "input_2", "input_3"],
}
ROW_SHAPES: dict[str, tuple[int, ...]] = {
    "input": (4,),
}
# The Spark SQL type every input column is read as (the model input's dtype).
COLUMN_TYPES: dict[str, str] = {
    "input_0": "float",
    "input_1": "float",
    "input_2": "float",
    "input_3": "float",
}
FORMATS = ("parquet", "csv", "jsonl")
# Exit statuses of python -m src.batch besides 0 (done) and 1 (an unexpected failure).
EXIT_USAGE = 2
EXIT_TOO_MANY_REJECTS = 3
EXIT_LOAD_FAILED = 4
EXIT_MODEL_FAILED = 5


class SettingsError(ValueError):
    """A setting holds a value the job cannot use; the message names it."""


@dataclass(frozen=True)
class BatchSettings:
    """One invocation of the job: what it reads, for which dates, and where it writes."""

    input_uri: str
    input_format: str
    output_uri: str
    dates: list[dt.date]
    master: str
    max_reject_ratio: float
    database_url: str | None
    metrics_file: Path | None
    pushgateway_url: str | None
    model_version: str = SERVICE_VERSION
    spark_conf: dict[str, str] = field(default_factory=dict)

    @property
    def predictions_uri(self) -> str:
        return f"{self.output_uri.rstrip('/')}/predictions"

    @property
    def rejects_uri(self) -> str:
        return f"{self.output_uri.rstrip('/')}/rejects"

    def input_for(self, date: dt.date) -> str:
        """The input of one run date: ``{date}`` in the input URI becomes it (a daily folder)."""
        return self.input_uri.replace("{date}", date.isoformat())


def defaults(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every setting's value from the environment, else its default, as text."""
    env = os.environ if env is None else env
    return {
        "input": env.get("BATCH_INPUT", str(PROJECT_ROOT / "data" / "input")),
        "format": env.get("BATCH_INPUT_FORMAT", "parquet"),
        "output": env.get("BATCH_OUTPUT", str(PROJECT_ROOT / "data" / "output")),
        # Empty: spark-defaults.conf's spark.master (SPARK_CONF_DIR), else local[*].
        "master": env.get("SPARK_MASTER", ""),
        "max_reject_ratio": env.get("MAX_REJECT_RATIO", "0.01"),
        "database_url": database_url(env),
        "metrics_file": env.get("METRICS_FILE", ""),
        "pushgateway_url": env.get("PUSHGATEWAY_URL", ""),
    }


def spark_conf(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Spark settings from SPARK_CONF_<anything> variables, each holding ``key=value``."""
    env = os.environ if env is None else env
    found: dict[str, str] = {}
    for name, text in sorted(env.items()):
        if not name.startswith("SPARK_CONF_") or name == "SPARK_CONF_DIR":
            continue
        key, equals, value = text.partition("=")
        if not equals or not key.startswith("spark."):
            raise SettingsError(f"{name}={text!r}: expected spark.some.key=value")
        found[key.strip()] = value.strip()
    return found


def build_settings(values: Mapping[str, str], dates: list[dt.date]) -> BatchSettings:
    """Check ``values`` (as :func:`defaults` gives them, possibly overridden) into settings."""
    if values["format"] not in FORMATS:
        raise SettingsError(f"--format {values['format']!r}: expected one of {', '.join(FORMATS)}")
    try:
        ratio = float(values["max_reject_ratio"])
    except ValueError:
        ratio = -1.0
    if not 0 <= ratio <= 1:
        raise SettingsError(
            f"MAX_REJECT_RATIO={values['max_reject_ratio']!r}: expected a number from 0 to 1"
        )
    if not dates:
        raise SettingsError("--start/--end: the range holds no date")
    return BatchSettings(
        input_uri=values["input"],
        input_format=values["format"],
        output_uri=values["output"],
        dates=dates,
        master=values["master"],
        max_reject_ratio=ratio,
        database_url=values["database_url"] or None,
        metrics_file=Path(values["metrics_file"]) if values["metrics_file"] else None,
        pushgateway_url=values["pushgateway_url"] or None,
        spark_conf=spark_conf(),
    )


def date_range(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every date from ``start`` to ``end``, both included."""
    return [start + dt.timedelta(days=offset) for offset in range((end - start).days + 1)]


def sample_row() -> dict[str, Any]:
    """The model's first sample row (data_sample) as the data set's columns and values."""
    row = DATA_SAMPLE[0]
    values: dict[str, Any] = {}
    for name, columns in INPUT_COLUMNS.items():
        flat = np.asarray(row[name] if isinstance(row, dict) else row, dtype=object).reshape(-1)
        values.update(zip(columns, flat.tolist(), strict=True))
    return values
