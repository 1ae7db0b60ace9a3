"""The model a run scores with: the project's own, or one fetched from MODEL_URI and verified.

Without MODEL_URI the job scores with the model in ``models/``, as the online service does. With
it, the driver fetches the model through the project's loader (``src.loader``: ``file://``,
``http(s)://``, ``s3://`` or ``gs://``, bounded in size and time, credentials never logged) into a
folder under BATCH_MODEL_DIR, refuses it unless it has MODEL_SHA256, and hands it to the
executors with Spark's file distribution. Each Python worker checks the sha256 again before it
loads the model, so no executor scores with a model other than the one the run names.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pyspark import SparkContext

from src import loader
from src.app import config

logger = logging.getLogger("src.batch")


@dataclass(frozen=True)
class JobModel:
    """The model file the driver holds, its sha256, and whether executors get it from Spark."""

    path: Path
    sha256: str
    shipped: bool


def own(environ: Mapping[str, str] | None = None) -> JobModel:
    """The project's own model (MODEL_FILEPATH), which every executor's image holds too."""
    settings = config.Settings.from_env(environ)
    return JobModel(settings.model_filepath, config.MODEL_SHA256, shipped=False)


def resolve(folder: Path, environ: Mapping[str, str] | None = None) -> JobModel:
    """The run's model: fetched into ``folder`` and verified when MODEL_URI is set.

    :raises loader.LoadError: the model could not be fetched, or is not the one MODEL_SHA256
        names (``loader.SettingsError`` for a malformed MODEL_URI or MODEL_SHA256).
    """
    env = os.environ if environ is None else environ
    if not (env.get("MODEL_URI") or loader.DEFAULT_URI):
        return own(env)
    job = loader.parse_job(["--output", str(folder / loader.MODEL_FILE_NAME)], env)
    done = loader.load(job, lambda line: logger.info(loader.redact(line)))
    logger.info(loader.redact(done))
    return JobModel(job.target, job.sha256, shipped=True)


def ship(context: SparkContext, model: JobModel) -> None:
    """Make a fetched model available to every executor (SparkFiles)."""
    if model.shipped:
        context.addFile(str(model.path))
