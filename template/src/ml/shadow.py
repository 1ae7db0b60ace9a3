"""The shadow model: run on the rows the served model answered, off the request's path, compared.

With SHADOW_MODEL_FILEPATH set (a second ONNX model taking the same input), every prediction the
served model makes is also queued for the shadow model. A task of the worker collects what queued
up within COLLECT_SECONDS and, after the answers have gone, sends it in one piece to the worker's
shadow process (src.ml.shadow_process, at the lowest CPU priority), which scores the whole batch
in one call and compares: on the label for a classifier, on a value further apart than
SHADOW_TOLERANCE for a regressor, on any output for a model whose every output is its prediction.
The worker counts the rows compared and the rows where the two models disagree. Nobody receives
the shadow's answers. The queue holds SHADOW_QUEUE_SIZE predictions, and at most IN_FLIGHT
batches are with the process; when the shadow falls behind (the served model's requests take the
CPU first) the queue fills, and a prediction is then not shadowed but counted as dropped. Every
SHADOW_LOG_EVERY-th batch is logged with both models' answers, as one JSON object, for offline
analysis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import Counter, Histogram

from src.ml.classifier import Classifier, ModelLoadError
from src.ml.shadow_process import HEADER, frame

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
# How long the first queued prediction waits for others to be sent with it; at most how many.
COLLECT_SECONDS = 0.005
MAX_BATCH = 256
# Batches sent to the process and not answered yet: one scored, one waiting.
IN_FLIGHT = 2
# How long the process may take to load and test the shadow model, and to stop.
START_SECONDS = 120.0
STOP_SECONDS = 5.0
PROJECT_ROOT = Path(__file__).resolve().parents[2]

Job = tuple[str, Any, Any]


class Shadow:
    """The shadow model of one worker: its queue, its process, and what it found."""

    def __init__(
        self,
        primary: Classifier,
        files: tuple[Path, Path, str],
        queue_size: int,
        tolerance: float,
        log_every: int,
    ) -> None:
        self.primary = primary
        # The shadow model's file, the labels, the output scored.
        self.files = files
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=queue_size)
        self.tolerance, self.log_every = tolerance, log_every
        self.compared = self.disagreed = 0
        # Counted here and published by the task: a metrics file write on every dropped request
        # would cost the busy service more than the drop saves.
        self.dropped = self.published_drops = 0
        self.model_path, self.sha256 = files[0], ""
        self.process: asyncio.subprocess.Process | None = None
        self.tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def load(
        cls, primary: Classifier, files: tuple[Path, Path, str], sample: Any, **options: Any
    ) -> Shadow:
        """Start the shadow's process, which loads the shadow model (its file, the labels, the
        output scored) as ``primary`` was and tests it with ``sample``; ``options`` are the
        constructor's.

        A model that cannot load or answer the sample is a ModelLoadError: the worker does not
        start, as with a bad served model.
        """
        shadow = cls(primary, files, **options)
        try:
            await asyncio.wait_for(shadow.start(sample), START_SECONDS)
        except BaseException:
            await shadow.stop()
            raise
        return shadow

    async def start(self, sample: Any) -> None:
        """Start the process, set it up, and start the tasks that feed it and hear it."""
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "src.ml.shadow_process",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=PROJECT_ROOT,
        )
        path, labels, output = self.files
        setup = {
            "path": str(path),
            "labels": str(labels),
            "output": output,
            "task": self.primary.task,
            "sample": sample,
            "tolerance": self.tolerance,
            "log_every": self.log_every,
        }
        self.send(setup)
        reply = await self.receive()
        if reply is None or "error" in reply:
            reason = "the process ended" if reply is None else reply["error"]
            raise ModelLoadError(f"{path}: shadow model: {reason}")
        self.model_path, self.sha256 = Path(reply["path"]), reply["sha256"]
        slots = asyncio.Semaphore(IN_FLIGHT)
        self.tasks = [
            asyncio.create_task(self.feed(slots)),
            asyncio.create_task(self.hear(slots)),
        ]

    async def stop(self) -> None:
        """Stop the tasks and the process; what is still queued is not shadowed."""
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        assert process.stdin is not None
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), STOP_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()

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

    async def feed(self, slots: asyncio.Semaphore) -> None:
        """Send the queued predictions to the process in batches, for as long as it runs.

        The first prediction waits COLLECT_SECONDS for others to join it, and the batch goes to
        the process in one write and to the shadow model in one call: per prediction, the
        hand-over and the call would cost more than a small model's inference.
        """
        while True:
            await slots.acquire()
            jobs = [await self.queue.get()]
            await asyncio.sleep(COLLECT_SECONDS)
            while not self.queue.empty() and len(jobs) < MAX_BATCH:
                jobs.append(self.queue.get_nowait())
            self.publish_drops()
            # Lists pickle ten times faster than small arrays, and compare the same.
            batch = [(name, rows, plain(answer)) for name, rows, answer in jobs]
            try:
                self.send(batch)
            except (ConnectionError, RuntimeError):  # the process is gone: hear() says so
                return

    async def hear(self, slots: asyncio.Semaphore) -> None:
        """Count what the process found in each batch, for as long as it runs."""
        while (result := await self.receive()) is not None:
            slots.release()
            self.record(result)
        code = None if self.process is None else await self.process.wait()
        logger.error("the shadow process ended (exit code %s): predictions are not shadowed", code)

    def send(self, value: Any) -> None:
        """Write one frame to the process."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(frame(value))

    async def receive(self) -> Any:
        """The process's next frame; None when it ended."""
        assert self.process is not None and self.process.stdout is not None
        stdout = self.process.stdout
        try:
            header = await stdout.readexactly(HEADER.size)
            body = await stdout.readexactly(HEADER.unpack(header)[0])
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        return pickle.loads(body)

    def record(self, result: dict[str, Any]) -> None:
        """Count a batch's rows, disagreements and failures; log what the process says to."""
        rows, differ = result["rows"], result["disagreed"]
        self.compared += rows
        self.disagreed += differ
        COMPARED.inc(rows)
        DISAGREED.inc(differ)
        SHADOW_SECONDS.observe(result["seconds"])
        for failure in result["failures"]:
            FAILED.inc()
            logger.warning("%s", failure)
        if result["entry"] is not None:
            logger.info("shadow comparison %s", result["entry"])


def plain(answer: Any) -> Any:
    """An answer as Python lists where it is an array."""
    return answer.tolist() if isinstance(answer, np.ndarray) else answer
