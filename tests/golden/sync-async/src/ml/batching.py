"""Adaptive batching (BATCH_MAX_SIZE, BATCH_MAX_DELAY_MS): requests that arrive together, one call.

For a model whose cost per call falls with the rows in it (a neural network, a big forest), one
ONNX Runtime call per request wastes most of the CPU. With BATCH_MAX_SIZE set, the rows of the
requests a worker receives within BATCH_MAX_DELAY_MS of the first one are stacked and scored in
one call, in a thread of their own, while the event loop takes in the next requests; every
request gets its own rows' answers back, in order. Those equal the answers the request would get
alone up to float rounding: ONNX Runtime may add up a bigger call in another order. V2 inference
(``/v2/models/.../infer``) is not batched.

- A request waits at most BATCH_MAX_DELAY_MS for batch-mates (plus the time the model takes to
  finish the batch before): under light load the delay is the whole cost.
- A batch holds whole requests and never more than BATCH_MAX_SIZE rows; a request of that many
  rows or more is scored alone.
- When the batch's call fails (a row the model refuses, or answers NaN or an infinity for), each
  request of the batch is scored alone: only the one at fault gets the error.
- A request whose client went away is left out of its batch, or its answer dropped; the others
  get theirs.
- ``inference_batch_rows`` and ``inference_batch_requests`` show how full the batches are.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import Histogram

from src.ml.classifier import Classifier

SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
BATCH_ROWS = Histogram(
    "inference_batch_rows", "Rows scored in one call of the model (batching on).", buckets=SIZES
)
BATCH_REQUESTS = Histogram(
    "inference_batch_requests",
    "Requests whose rows were scored in one call of the model (batching on).",
    buckets=SIZES,
)
# uvloop's timers (libuv's) count whole milliseconds and never fire early: set one millisecond
# ahead, a batch is due within the delay rather than up to a millisecond after it.
TIMER_SLACK = 0.001
# The classifier's methods a batch serves: class scores (or values, or every output), labels.
BATCHED = ("predict", "predict_labels")


@dataclass
class Waiting:
    """A request's rows, waiting for their batch."""

    rows: list[Any]
    labels: bool
    answer: asyncio.Future[Any]
    deadline: float


class Batcher:
    """The batches of one worker's model."""

    def __init__(self, model: Classifier, max_rows: int, max_delay_seconds: float) -> None:
        self.model, self.max_rows, self.max_delay = model, max_rows, max_delay_seconds
        self.waiting: deque[Waiting] = deque()
        self.waiting_rows = 0
        self.due = asyncio.Event()
        self.timer: asyncio.TimerHandle | None = None
        # One call at a time: while it runs, the next batch fills.
        self.executor = ThreadPoolExecutor(1, "batch")
        self.task: asyncio.Task[None] | None = None

    def takes(self, predict: Callable[[Any], Any]) -> bool:
        """Whether ``predict`` is a method of this model that batches serve."""
        owner = getattr(predict, "__self__", None)
        return owner is self.model and getattr(predict, "__name__", "") in BATCHED

    def start(self) -> None:
        """Start the task that makes and scores the batches."""
        self.task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        """Stop the task; the server has let the requests in flight finish before."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def predict(self, predict: Callable[[Any], Any], rows: list[Any]) -> Any:
        """What ``predict`` answers for ``rows``, scored with the rows of other requests."""
        loop = asyncio.get_running_loop()
        if len(rows) >= self.max_rows:
            return await loop.run_in_executor(self.executor, predict, rows)
        waiting = Waiting(rows, predict.__name__ == "predict_labels", loop.create_future(), 0.0)
        waiting.deadline = loop.time() + self.max_delay
        self.waiting.append(waiting)
        self.waiting_rows += len(rows)
        if self.waiting_rows >= self.max_rows:
            self.due.set()
        elif self.timer is None:
            self.timer = loop.call_at(waiting.deadline - TIMER_SLACK, self.due.set)
        # Cancelled with the request: its rows are left out, or its answer dropped.
        return await waiting.answer

    async def run(self) -> None:
        """Score a batch whenever one is full or its first request has waited long enough."""
        while True:
            await self.due.wait()
            self.due.clear()
            batch = self.take()
            self.schedule()
            if batch:
                await self.score(batch)

    def take(self) -> list[Waiting]:
        """The requests of the next batch, from the first waiting, up to max_rows rows."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch: list[Waiting] = []
        rows = 0
        while self.waiting and rows + len(self.waiting[0].rows) <= self.max_rows:
            waiting = self.waiting.popleft()
            self.waiting_rows -= len(waiting.rows)
            if not waiting.answer.cancelled():
                batch.append(waiting)
                rows += len(waiting.rows)
        return batch

    def schedule(self) -> None:
        """Make the next batch due when it is full or its first request's time is up."""
        if not self.waiting:
            return
        loop = asyncio.get_running_loop()
        first = self.waiting[0].deadline
        if self.waiting_rows >= self.max_rows or first - TIMER_SLACK <= loop.time():
            self.due.set()
        else:
            self.timer = loop.call_at(first - TIMER_SLACK, self.due.set)

    async def score(self, batch: list[Waiting]) -> None:
        """Score the batch in one call and hand every request its rows' answers."""
        rows = [row for waiting in batch for row in waiting.rows]
        loop = asyncio.get_running_loop()
        try:
            answers = await loop.run_in_executor(self.executor, self.answer_all, batch, rows)
        except Exception:  # one at a time tells which request is at fault
            for waiting in batch:
                await self.alone(waiting)
            return
        BATCH_ROWS.observe(len(rows))
        BATCH_REQUESTS.observe(len(batch))
        for waiting, answer in zip(batch, answers, strict=True):
            if not waiting.answer.done():
                waiting.answer.set_result(answer)

    def answer_all(self, batch: list[Waiting], rows: list[Any]) -> list[Any]:
        """Every request's answer, from one call for all their rows; in the thread."""
        scores = self.model.predict(rows)
        answers = []
        start = 0
        for waiting in batch:
            end = start + len(waiting.rows)
            part = rows_of(scores, start, end, len(rows))
            if waiting.labels:
                part = [self.model.labels[index] for index in np.asarray(part).argmax(axis=1)]
            answers.append(part)
            start = end
        return answers

    async def alone(self, waiting: Waiting) -> None:
        """Score one request of a failed batch by itself; its error is its own."""
        if waiting.answer.done():
            return
        predict = self.model.predict_labels if waiting.labels else self.model.predict
        loop = asyncio.get_running_loop()
        try:
            answer = await loop.run_in_executor(self.executor, predict, waiting.rows)
        except Exception as err:  # handed to the request, which answers it as unbatched
            if not waiting.answer.done():
                waiting.answer.set_exception(err)
            return
        if not waiting.answer.done():
            waiting.answer.set_result(answer)


def rows_of(scores: Any, start: int, end: int, total: int) -> Any:
    """Rows ``start`` to ``end`` of a prediction for ``total`` rows: an array's rows, or, for a
    model answering every output by name, each output's; an output that is not one entry per
    row cannot be split (ValueError: the batch's requests are then scored alone)."""
    if not isinstance(scores, dict):
        return scores[start:end]
    parts = {}
    for name, value in scores.items():
        if not isinstance(value, list | np.ndarray) or np.ndim(value) == 0 or len(value) != total:
            raise ValueError(f"output {name!r} is not one entry per row")
        parts[name] = value[start:end]
    return parts
