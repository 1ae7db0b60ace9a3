"""The worker's loop: take a job, run the slow model on it, record the result; until stopped.

SIGTERM (or SIGINT) lets the job in hand finish and be recorded, then the worker leaves the group
and exits 0. Redis being away never stops the worker: it waits, retries and says so in its
heartbeat, so that a restart (which would not bring Redis back) is not what fixes it.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from types import FrameType

import orjson
from redis.exceptions import RedisError

from src.app import config
from src.app.config import Settings, SettingsError
from src.jobs.config import QueueSettings
from src.jobs.consumer import Consumer, Delivery
from src.ml.classifier import Classifier, ModelLoadError
from src.worker.heartbeat import Heartbeat

logger = logging.getLogger("src.worker")

# OSError: a host name that does not resolve fails before redis-py wraps anything.
REDIS_ERRORS = (RedisError, OSError)
MAX_BACKOFF_SECONDS = 5.0


class Worker:
    """Runs jobs from one consumer with one model until ``stop`` is set."""

    def __init__(
        self,
        consumer: Consumer,
        model: Classifier,
        settings: QueueSettings,
        stop: threading.Event,
    ) -> None:
        self.consumer = consumer
        self.model = model
        self.settings = settings
        self.stop = stop
        self.heartbeat = Heartbeat(settings.heartbeat_file)

    def run(self) -> None:
        """Work until stopped; Redis errors pause the loop with a growing back-off."""
        backoff = 0.1
        joined = False
        while not self.stop.is_set():
            try:
                if not joined:
                    self.consumer.join()
                    joined = True
                    logger.info("worker %s joined the queue", self.consumer.name)
                self.heartbeat.beat(redis=True)
                delivery = self.consumer.take()
                if delivery is not None:
                    self.handle(delivery)
                backoff = 0.1
            except REDIS_ERRORS as err:
                logger.warning("Redis unreachable, retrying in %.1f s: %s", backoff, err)
                self.heartbeat.beat(redis=False)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def handle(self, delivery: Delivery) -> None:
        """Start the job, run it if it should run, and record how it ended."""
        start = self.consumer.start(delivery)
        if start.outcome != "running":
            logger.warning("job %s not run: %s", delivery.job_id, start.outcome)
            self.consumer.finish(delivery, {})
            return
        began = time.perf_counter()
        fields = self.predict(delivery.job_id, start.rows)
        elapsed_ms = (time.perf_counter() - began) * 1000
        if self.record(delivery, fields):
            logger.info("job %s %s in %.1f ms", delivery.job_id, fields["status"], elapsed_ms)
        else:
            logger.warning(
                "job %s was taken over by another worker; result dropped", delivery.job_id
            )

    def predict(self, job_id: str, rows: object) -> dict[str, str | bytes]:
        """The fields to record: the slow model's prediction (and labels), or why it failed."""
        try:
            prediction = self.model.predict(rows)
            labels = None
            if self.model.task == "classification":
                labels = [self.model.labels[index] for index in prediction.argmax(axis=1)]
        except Exception as err:  # a model that cannot score one job must not stop the worker
            logger.exception("job %s: the slow model failed", job_id)
            return {"status": "failed", "error": f"the slow model failed: {err}", **_finished()}
        fields: dict[str, str | bytes] = {
            "status": "done",
            "prediction": orjson.dumps(prediction, option=orjson.OPT_SERIALIZE_NUMPY),
            **_finished(),
        }
        if labels is not None:
            fields["labels"] = orjson.dumps(labels)
        return fields

    def record(self, delivery: Delivery, fields: dict[str, str | bytes]) -> bool:
        """Finish the job, retrying through a Redis outage for as long as the job stays ours."""
        deadline = time.monotonic() + self.settings.claim_idle_ms / 1000
        while True:
            try:
                return self.consumer.finish(delivery, fields)
            except REDIS_ERRORS as err:
                if time.monotonic() > deadline:
                    raise
                logger.warning(
                    "job %s: recording the result failed, retrying: %s", delivery.job_id, err
                )
                time.sleep(0.5)


def _finished() -> dict[str, str | bytes]:
    return {"finished": f"{time.time():.6f}"}


def consumer_name() -> str:
    """Unique per process: a restarted container on the same host is a new consumer."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def load_model(settings: Settings, queue: QueueSettings) -> Classifier:
    """The slow model, checked on the sample rows like the fast one."""
    model = Classifier.load(
        queue.slow_model_filepath,
        settings.label_filepath,
        config.OUTPUT_NAME,
        settings.onnx_threads,
        config.TASK,
    )
    model.self_test(config.DATA_SAMPLE)
    logger.info("slow model ready: %s sha256=%s", model.model_path, model.sha256)
    return model


def main() -> int:
    """Run a worker until SIGTERM or SIGINT; 0 after a clean stop, 1 if it cannot start.

    Every setting comes from the environment, as for the proxy.
    """
    level = os.environ.get("LOG_LEVEL", "info").upper()
    logging.basicConfig(
        stream=sys.stdout,
        level=level if level in logging.getLevelNamesMapping() else logging.INFO,
        format="%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
    )
    try:
        settings, queue = Settings.from_env(), QueueSettings.from_env()
        model = load_model(settings, queue)
    except (SettingsError, ModelLoadError) as err:
        logger.error("cannot start: %s", err)
        return 1
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        logger.info(
            "%s received: finishing the job in hand, then stopping", signal.Signals(signum).name
        )
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    consumer = Consumer.connect(queue, consumer_name())
    Worker(consumer, model, queue, stop).run()
    try:
        consumer.leave()
    except REDIS_ERRORS as err:
        logger.warning("could not leave the group cleanly: %s", err)
    consumer.close()
    logger.info("worker %s stopped", consumer.name)
    return 0
