"""The job's metrics where Prometheus can read them: a textfile (node exporter's textfile
collector) and, when PUSHGATEWAY_URL is set, a Pushgateway."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile

from src.app import config
from src.batch.job import RunReport

JOB = f"{config.SERVICE_NAME}-batch"


def registry_for(reports: list[RunReport], succeeded: bool) -> CollectorRegistry:
    """Gauges of the last run of each date; the last success time only when all succeeded."""
    registry = CollectorRegistry()
    labels = ["run_date"]
    read = Gauge("batch_rows_read", "Rows read by the run", labels, registry=registry)
    predicted = Gauge("batch_rows_predicted", "Rows predicted", labels, registry=registry)
    rejected = Gauge("batch_rows_rejected", "Rows set aside as rejects", labels, registry=registry)
    seconds = Gauge("batch_duration_seconds", "Duration of the run", labels, registry=registry)
    for report in reports:
        date = report.date.isoformat()
        read.labels(date).set(report.rows_read)
        predicted.labels(date).set(report.rows_predicted)
        rejected.labels(date).set(report.rows_rejected)
        seconds.labels(date).set(report.seconds)
    if succeeded:
        last = Gauge(
            "batch_last_success_timestamp_seconds",
            "When the job last finished every run it was given",
            registry=registry,
        )
        last.set(time.time())
    return registry


def export(
    reports: list[RunReport], succeeded: bool, textfile: Path | None, pushgateway: str | None
) -> None:
    """Write (atomically) and push the metrics, where configured."""
    registry = registry_for(reports, succeeded)
    if textfile is not None:
        textfile.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(textfile), registry)
    if pushgateway:
        push_to_gateway(pushgateway, job=JOB, registry=registry, timeout=10)
