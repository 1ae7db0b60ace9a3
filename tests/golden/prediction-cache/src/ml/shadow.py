"""The shadow model: run on the rows the served model answered, off the request's path, compared.

With SHADOW_MODEL_FILEPATH set (a second ONNX model taking the same input), every prediction the
served model makes is also queued for the shadow model. A task of the worker collects what queued
up within COLLECT_SECONDS and hands it, after the answers have gone, to a thread of the lowest CPU
priority, which scores the whole batch in one call and counts the rows compared and the rows
where the two models disagree: on the label for a classifier, on a value further apart than
SHADOW_TOLERANCE for a regressor, on any output for a model whose every output is its prediction.
Nobody receives the shadow's answers. The queue holds SHADOW_QUEUE_SIZE predictions; when the
shadow falls behind (the served model's requests take the CPU first) it fills, and a prediction
is then not shadowed but counted as dropped. Every SHADOW_LOG_EVERY-th batch is logged with both
models' answers, as one JSON object, for offline analysis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
from prometheus_client import Counter, Histogram

from src.ml.classifier import Classifier

logger = logging.getLogger(__name__)

COMPARED = Counter("shadow_rows_compared", "Rows the shadow model answered too.")
DISAGREED = Counter(
    "shadow_rows_disagreed",
    "Rows where the shadow model's label (or value, beyond SHADOW_TOLERANCE) differs.",
)
DROPPED = Counter(
    "shadow_predictions_dropped", "Predictions not shadowed because the shadow's queue was full."
)
FAILED = Counter("shadow_predictions_failed", "Predictions the shadow model could not answer.")
SHADOW_SECONDS = Histogram(
    "shadow_inference_duration_seconds",
    "Seconds the shadow model took to score one batch of queued predictions.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
# The predictions compared: class scores (or values), and labels.
SHADOWED = ("predict", "predict_labels")
# The tasks whose predictions of many requests the shadow scores in one call.
BATCHED_TASKS = ("classification", "regression")
# How long the first queued prediction waits for others to be scored with it; at most how many.
COLLECT_SECONDS = 0.005
MAX_BATCH = 256

Job = tuple[str, Any, Any]


class Shadow:
    """The shadow model of one worker: its queue, the task that empties it, and what it found."""

    def __init__(
        self,
        primary: Classifier,
        model: Classifier,
        queue_size: int,
        tolerance: float,
        log_every: int,
    ) -> None:
        self.primary, self.model = primary, model
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=queue_size)
        self.tolerance, self.log_every = tolerance, log_every
        self.compared = self.disagreed = self.batches = 0
        # Counted here and published by the task: a metrics file write on every dropped request
        # would cost the busy service more than the drop saves.
        self.dropped = self.published_drops = 0
        self.label_index = {label: index for index, label in enumerate(primary.labels)}
        self.task: asyncio.Task[None] | None = None
        # One thread of the lowest priority: the served model's requests come first for the CPU,
        # and when the shadow falls behind, its queue fills and predictions are dropped instead.
        self.executor = ThreadPoolExecutor(1, "shadow", initializer=lowest_priority)

    @classmethod
    def load(
        cls, primary: Classifier, files: tuple[Path, Path, str], sample: Any, **options: Any
    ) -> Shadow:
        """Load the shadow model (its file, the labels, the output scored), as ``primary`` was,
        and give it the start-up test with ``sample``; ``options`` are the constructor's.

        A model that cannot load or answer the sample is a ModelLoadError: the worker does not
        start, as with a bad served model.
        """
        path, labels, output = files
        model = Classifier.load(path, labels, output, 1, primary.task)
        model.self_test(sample)
        return cls(primary, model, **options)

    def start(self) -> None:
        """Start the task that runs the shadow model."""
        self.task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        """Stop the task; what is still queued is not shadowed."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.executor.shutdown(wait=False, cancel_futures=True)

    def offer(self, predict: Callable[[Any], Any], rows: Any, answer: Any) -> None:
        """Queue a prediction for the shadow, or count it dropped; never waits."""
        name = getattr(predict, "__name__", "")
        if name not in SHADOWED:
            return
        try:
            self.queue.put_nowait((name, rows, answer))
        except asyncio.QueueFull:
            self.dropped += 1

    def publish_drops(self) -> None:
        """Add the drops counted since the last call to shadow_predictions_dropped_total."""
        if self.dropped > self.published_drops:
            DROPPED.inc(self.dropped - self.published_drops)
            self.published_drops = self.dropped

    async def run(self) -> None:
        """Shadow the queued predictions in batches, for as long as the worker serves.

        The first prediction waits COLLECT_SECONDS for others to join it, and the batch goes to
        the thread in one hop and to the shadow model in one call: per prediction, the hand-over
        and the call would cost more than a small model's inference.
        """
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            await asyncio.sleep(COLLECT_SECONDS)
            while not self.queue.empty() and len(jobs) < MAX_BATCH:
                jobs.append(self.queue.get_nowait())
            self.publish_drops()
            await loop.run_in_executor(self.executor, self.shadow, jobs)

    def shadow(self, jobs: list[Job]) -> None:
        """Score the batch, compare, count; in the thread."""
        started = perf_counter()
        try:
            primary, shadowed = self.score_together(jobs)
        except Exception:  # one at a time tells which prediction the model refuses
            for job in jobs:
                self.compare_alone(job)
        else:
            if self.primary.task == "classification":
                differ = primary != shadowed
            else:
                close = np.isclose(primary, shadowed, rtol=0.0, atol=self.tolerance)
                differ = ~close.all(axis=1)
            self.record(int(differ.sum()), len(primary), lambda: self.readable(primary, shadowed))
        SHADOW_SECONDS.observe(perf_counter() - started)

    def readable(self, primary: np.ndarray, shadowed: np.ndarray) -> tuple[list[Any], list[Any]]:
        """Both models' answers of a batch as lists, labels by name: for the log."""
        if self.primary.task == "classification":
            labels = np.asarray(self.primary.labels, dtype=object)
            primary, shadowed = labels[primary], labels[shadowed]
        return primary.tolist(), shadowed.tolist()

    def score_together(self, jobs: list[Job]) -> tuple[np.ndarray, np.ndarray]:
        """Every job's rows in one call of the shadow model: the served model's answers and the
        shadow's, row by row (class indexes for a classifier, values for a regressor)."""
        if self.primary.task not in BATCHED_TASKS:
            raise TypeError("outputs by name are compared one prediction at a time")
        rows = [row for _, job_rows, _ in jobs for row in job_rows]
        scores = np.asarray(self.model.predict(rows))
        if self.primary.task == "classification":
            primary = np.concatenate([self.indexes(name, answer) for name, _, answer in jobs])
            return primary, scores.argmax(axis=1)
        values = [np.asarray(answer, dtype=np.float64) for _, _, answer in jobs]
        primary = np.concatenate([value.reshape(len(value), -1) for value in values])
        return primary, scores.astype(np.float64).reshape(len(rows), -1)

    def indexes(self, name: str, answer: Any) -> np.ndarray:
        """The class index of each row the served model answered."""
        if name == "predict_labels":
            return np.array([self.label_index[label] for label in answer], dtype=np.int64)
        return np.asarray(answer).argmax(axis=1)

    def compare_alone(self, job: Job) -> None:
        """Score and compare one job; a failure is counted and logged."""
        name, _, answer = job
        outcome = self.score_alone(job)
        if outcome is None:
            return
        try:
            primary, shadowed = self.answers(name, answer), self.answers(name, outcome)
            differ = sum(not self.agree(a, b) for a, b in zip(primary, shadowed, strict=True))
        except Exception as err:  # answers that cannot be compared: said, not fatal
            FAILED.inc()
            logger.warning("shadow answers not comparable: %s: %s", type(err).__name__, err)
            return
        self.record(differ, len(primary), lambda: (primary, shadowed))

    def score_alone(self, job: Job) -> Any:
        """The shadow's answer to one job, or None (counted and logged) when it failed."""
        name, rows, _ = job
        try:
            return getattr(self.model, name)(rows)
        except Exception as err:  # a shadow that fails must not take the worker down
            FAILED.inc()
            logger.warning("the shadow model failed: %s: %s", type(err).__name__, err)
            return None

    def answers(self, name: str, answer: Any) -> list[Any]:
        """What is compared, one item per row: a label, or a row's values."""
        if name == "predict_labels":
            return list(answer)
        if self.primary.task == "classification":
            labels = self.primary.labels
            return [labels[index] for index in np.asarray(answer).argmax(axis=1)]
        if isinstance(answer, dict):
            # Every output by name (task "raw"): a row agrees when all its outputs are equal.
            count = len(next(iter(answer.values())))
            return [
                json.dumps(
                    {key: np.asarray(value[row]).tolist() for key, value in answer.items()},
                    sort_keys=True,
                )
                for row in range(count)
            ]
        return np.asarray(answer, dtype=np.float64).reshape(len(answer), -1).tolist()

    def record(
        self, differ: int, rows: int, answers: Callable[[], tuple[list[Any], list[Any]]]
    ) -> None:
        """Count a batch's rows and disagreements; log every ``log_every``-th batch with both
        models' answers (``answers`` makes them only then)."""
        self.compared += rows
        self.disagreed += differ
        self.batches += 1
        COMPARED.inc(rows)
        DISAGREED.inc(differ)
        if self.batches % self.log_every == 0:
            primary, shadow = answers()
            entry = {"rows": rows, "disagreed": differ, "primary": primary, "shadow": shadow}
            logger.info("shadow comparison %s", json.dumps(entry))

    def agree(self, primary: Any, shadow: Any) -> bool:
        """One row: the same label, or every value within the tolerance."""
        if isinstance(primary, str):
            return bool(primary == shadow)
        return bool(np.allclose(primary, shadow, rtol=0.0, atol=self.tolerance))


def lowest_priority() -> None:
    """Give the calling thread the lowest CPU priority (nice 19) where the OS allows it."""
    # On Linux a thread has a nice value of its own, set through its thread ID.
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
