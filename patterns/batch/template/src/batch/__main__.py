"""``python -m src.batch``: score the data set for one date (today, UTC) or a range of dates.

Exit status: 0 done, 2 bad settings, 3 too many rejected rows (nothing published for that date),
4 PostgreSQL could not be loaded, 5 the model MODEL_URI names could not be fetched or is not the
one MODEL_SHA256 names, 1 anything else. Runs stop at the first date that fails.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import logging.config
import os
import sys
import tempfile
from pathlib import Path

from src import loader
from src.app.logs import logging_config
from src.batch import job, metrics, model
from src.batch.load import LoadError
from src.batch.settings import (
    EXIT_LOAD_FAILED,
    EXIT_MODEL_FAILED,
    EXIT_TOO_MANY_REJECTS,
    EXIT_USAGE,
    BatchSettings,
    SettingsError,
    build_settings,
    date_range,
    defaults,
)

logger = logging.getLogger("src.batch")


def parser() -> argparse.ArgumentParser:
    values = defaults()
    cli = argparse.ArgumentParser(prog="python -m src.batch", description=__doc__)
    cli.add_argument("--date", type=dt.date.fromisoformat, help="the run date (default: today)")
    cli.add_argument("--start", type=dt.date.fromisoformat, help="backfill from this date")
    cli.add_argument("--end", type=dt.date.fromisoformat, help="backfill to this date (included)")
    cli.add_argument("--input", default=values["input"], help="input URI; {date} is the run date")
    cli.add_argument("--format", default=values["format"], help="parquet, csv or jsonl")
    cli.add_argument("--output", default=values["output"], help="output URI")
    cli.add_argument("--master", default=values["master"], help="Spark master URL")
    cli.add_argument("--max-reject-ratio", default=values["max_reject_ratio"])
    return cli


def dates(args: argparse.Namespace) -> list[dt.date]:
    if args.date and (args.start or args.end):
        raise SettingsError("--date: give either --date or --start/--end")
    if args.start or args.end:
        if not (args.start and args.end):
            raise SettingsError("--start/--end: give both")
        return date_range(args.start, args.end)
    return [args.date or dt.datetime.now(dt.UTC).date()]


def main(argv: list[str] | None = None) -> int:
    logging.config.dictConfig(logging_config("json", "INFO"))
    args = parser().parse_args(argv)
    values = {**defaults(), **{key: str(value) for key, value in vars(args).items() if value}}
    try:
        settings = build_settings(
            {**values, "max_reject_ratio": args.max_reject_ratio}, dates(args)
        )
    except SettingsError as err:
        print(f"python -m src.batch: {err}", file=sys.stderr)
        return EXIT_USAGE
    # A fetched model lives as long as the runs that use it.
    with tempfile.TemporaryDirectory(prefix="model-", dir=os.environ.get("BATCH_MODEL_DIR")) as tmp:
        try:
            chosen = model.resolve(Path(tmp))
        except loader.SettingsError as err:
            print(f"python -m src.batch: {loader.redact(str(err))}", file=sys.stderr)
            return EXIT_USAGE
        except loader.LoadError as err:
            logger.error(loader.redact(str(err)))
            metrics.export([], False, settings.metrics_file, settings.pushgateway_url)
            return EXIT_MODEL_FAILED
        return run_all(settings, chosen)


def run_all(settings: BatchSettings, chosen: model.JobModel) -> int:
    """Every date's run in one Spark session; the exit status."""
    reports: list[job.RunReport] = []
    status = 0
    spark = job.session(settings)
    try:
        model.ship(spark.sparkContext, chosen)
        for date in settings.dates:
            reports.append(job.run_date(spark, settings, date, chosen))
    except job.TooManyRejectsError as err:
        logger.error(str(err))
        status = EXIT_TOO_MANY_REJECTS
    except LoadError as err:
        logger.error(str(err))
        status = EXIT_LOAD_FAILED
    finally:
        spark.stop()
        metrics.export(reports, status == 0, settings.metrics_file, settings.pushgateway_url)
    return status


if __name__ == "__main__":
    sys.exit(main())
