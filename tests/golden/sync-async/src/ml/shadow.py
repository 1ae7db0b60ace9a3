"""The shadow model: run on the rows the served model answered, off the request's path, compared.

With SHADOW_MODEL_FILEPATH set (a second ONNX model taking the same input), every prediction the
served model makes is also queued for the shadow model; a task of the worker runs it after the
answer has gone, in a thread, and counts the rows compared and the rows where the two disagree:
on the label for a classifier, on a value further apart than SHADOW_TOLERANCE for a regressor.
Nobody receives the shadow's answers. The queue holds SHADOW_QUEUE_SIZE predictions; when it is
full a prediction is not shadowed and counted as dropped, so the shadow can never hold up or
slow down the served model by more than the CPU its thread takes. Every SHADOW_LOG_EVERY-th
comparison is logged with both answers, as one JSON object, for offline analysis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
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
    "Seconds the shadow model took to score the rows of one prediction.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
# The predictions compared: class scores (or values), and labels.
SHADOWED = ("predict", "predict_labels")

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
        self.compared = self.disagreed = self.comparisons = 0
        self.task: asyncio.Task[None] | None = None

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

    def offer(self, predict: Callable[[Any], Any], rows: Any, answer: Any) -> None:
        """Queue a prediction for the shadow, or count it dropped; never waits."""
        name = getattr(predict, "__name__", "")
        if name not in SHADOWED:
            return
        try:
            self.queue.put_nowait((name, rows, answer))
        except asyncio.QueueFull:
            DROPPED.inc()

    async def run(self) -> None:
        """Shadow the queued predictions one at a time, for as long as the worker serves."""
        while True:
            name, rows, answer = await self.queue.get()
            started = perf_counter()
            try:
                shadowed = await asyncio.to_thread(getattr(self.model, name), rows)
            except Exception as err:  # a shadow that fails must not take the worker down
                FAILED.inc()
                logger.warning("the shadow model failed: %s: %s", type(err).__name__, err)
                continue
            SHADOW_SECONDS.observe(perf_counter() - started)
            self.record(self.answers(name, answer), self.answers(name, shadowed))

    def answers(self, name: str, answer: Any) -> list[Any]:
        """What is compared, one item per row: a label, or a row's values."""
        if name == "predict_labels":
            return list(answer)
        if self.primary.task == "classification":
            labels = self.primary.labels
            return [labels[index] for index in np.asarray(answer).argmax(axis=1)]
        return np.asarray(answer, dtype=np.float64).reshape(len(answer), -1).tolist()

    def record(self, primary: list[Any], shadow: list[Any]) -> None:
        """Count the rows and the disagreements; log every ``log_every``-th comparison."""
        differ = sum(not self.agree(a, b) for a, b in zip(primary, shadow, strict=True))
        self.compared += len(primary)
        self.disagreed += differ
        self.comparisons += 1
        COMPARED.inc(len(primary))
        DISAGREED.inc(differ)
        if self.comparisons % self.log_every == 0:
            entry = {
                "rows": len(primary),
                "disagreed": differ,
                "primary": primary,
                "shadow": shadow,
            }
            logger.info("shadow comparison %s", json.dumps(entry))

    def agree(self, primary: Any, shadow: Any) -> bool:
        """One row: the same label, or every value within the tolerance."""
        if isinstance(primary, str):
            return bool(primary == shadow)
        return bool(np.allclose(primary, shadow, rtol=0.0, atol=self.tolerance))
