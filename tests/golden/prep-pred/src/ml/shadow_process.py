"""The shadow model's own process: ``python -m src.ml.shadow_process``, one per worker.

The worker (src.ml.shadow) talks to it over its stdin and stdout in frames: a 4-byte big-endian
length, then a pickle. The first frame sets the process up (the shadow model's file, its labels
and output, the task, the start-up sample, the tolerance, how often to log); the answer says
whether the model loaded and passed its start-up test. Every later frame is a batch of the
served model's predictions (the method's name, the rows, its answer); the answer is what the
comparison found. End of input ends the process: the worker stopped, or died.

A process, not a thread of the worker: the rows are turned into tensors and the answers compared
in Python, and in a thread that work would hold the worker's GIL while requests wait for it. At
the lowest CPU priority, the served model's requests come first for the CPU.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from time import perf_counter
from typing import Any, BinaryIO

import numpy as np

from src.ml.classifier import Classifier

HEADER = struct.Struct(">I")
# The tasks whose predictions of many requests are scored in one call.
BATCHED_TASKS = ("classification", "regression")

Job = tuple[str, Any, Any]
Answers = Callable[[], tuple[list[Any], list[Any]]]


def read_frame(stream: BinaryIO) -> Any:
    """The next frame's object; None at the end of input."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    body = stream.read(HEADER.unpack(header)[0])
    return pickle.loads(body)


def frame(value: Any) -> bytes:
    """``value`` as one frame."""
    body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


class Comparison:
    """The shadow model and how its answers are compared with the served model's."""

    def __init__(self, model: Classifier, tolerance: float, log_every: int) -> None:
        self.model, self.tolerance, self.log_every = model, tolerance, log_every
        self.label_index = {label: index for index, label in enumerate(model.labels)}
        self.batches = 0

    def batch(self, jobs: list[Job]) -> dict[str, Any]:
        """Score and compare a batch: rows, disagreements, failures, seconds, and, every
        ``log_every``-th batch, both models' answers as a JSON line.
        """
        started = perf_counter()
        failures: list[str] = []
        rows, differ, answers = self.compare(jobs, failures)
        entry = None
        if rows:
            self.batches += 1
            if self.batches % self.log_every == 0:
                primary, shadow = answers()
                log = {"rows": rows, "disagreed": differ, "primary": primary, "shadow": shadow}
                entry = json.dumps(log)
        return {
            "rows": rows,
            "disagreed": differ,
            "failures": failures,
            "seconds": perf_counter() - started,
            "entry": entry,
        }

    def compare(self, jobs: list[Job], failures: list[str]) -> tuple[int, int, Answers]:
        """Rows compared, rows that differ, and what makes both models' answers for the log
        (only made when logged).
        """
        try:
            primary, shadowed = self.score_together(jobs)
            differ = int(self.differ(primary, shadowed).sum())
        except Exception:  # one at a time tells which prediction fails, and why
            return self.compare_each(jobs, failures)
        return len(primary), differ, lambda: self.readable(primary, shadowed)

    def compare_each(self, jobs: list[Job], failures: list[str]) -> tuple[int, int, Answers]:
        """:meth:`compare`, one job at a time."""
        outcomes = [found for job in jobs if (found := self.compare_alone(job, failures))]
        primary = [answer for outcome in outcomes for answer in outcome[0]]
        shadowed = [answer for outcome in outcomes for answer in outcome[1]]
        return len(primary), sum(outcome[2] for outcome in outcomes), lambda: (primary, shadowed)

    def differ(self, primary: np.ndarray, shadowed: np.ndarray) -> np.ndarray:
        """Row by row, whether the two answers disagree."""
        if self.model.task == "classification":
            return np.asarray(primary != shadowed)
        close = np.isclose(primary, shadowed, rtol=0.0, atol=self.tolerance)
        return np.asarray(~close.all(axis=1))

    def readable(self, primary: np.ndarray, shadowed: np.ndarray) -> tuple[list[Any], list[Any]]:
        """Both models' answers of a batch as lists, labels by name: for the log."""
        if self.model.task == "classification":
            labels = np.asarray(self.model.labels, dtype=object)
            primary, shadowed = labels[primary], labels[shadowed]
        return primary.tolist(), shadowed.tolist()

    def score_together(self, jobs: list[Job]) -> tuple[np.ndarray, np.ndarray]:
        """Every job's rows in one call of the shadow model: the served model's answers and the
        shadow's, row by row (class indexes for a classifier, values for a regressor).
        """
        if self.model.task not in BATCHED_TASKS:
            raise TypeError("outputs by name are compared one prediction at a time")
        rows = [row for _, job_rows, _ in jobs for row in job_rows]
        scores = np.asarray(self.model.predict(rows))
        if self.model.task == "classification":
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

    def compare_alone(
        self, job: Job, failures: list[str]
    ) -> tuple[list[Any], list[Any], int] | None:
        """One job's answers of both models and how many rows differ; None (the reason added to
        ``failures``) when the shadow failed or the answers cannot be compared.
        """
        name, rows, answer = job
        try:
            outcome = getattr(self.model, name)(rows)
        except Exception as err:  # a shadow that fails must not stop the comparison
            failures.append(f"the shadow model failed: {type(err).__name__}: {err}")
            return None
        try:
            primary, shadowed = self.answers(name, answer), self.answers(name, outcome)
            differ = sum(not self.agree(a, b) for a, b in zip(primary, shadowed, strict=True))
        except Exception as err:  # answers that cannot be compared: said, not fatal
            failures.append(f"shadow answers not comparable: {type(err).__name__}: {err}")
            return None
        return primary, shadowed, differ

    def answers(self, name: str, answer: Any) -> list[Any]:
        """What is compared, one item per row: a label, or a row's values."""
        if name == "predict_labels":
            return list(answer)
        if self.model.task == "classification":
            labels = self.model.labels
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

    def agree(self, primary: Any, shadow: Any) -> bool:
        """One row: the same label, or every value within the tolerance."""
        if isinstance(primary, str):
            return bool(primary == shadow)
        return bool(np.allclose(primary, shadow, rtol=0.0, atol=self.tolerance))


def set_up(setup: dict[str, Any]) -> tuple[Comparison | None, dict[str, Any]]:
    """Load and test the shadow model; the comparison, or None and the reason, for the worker."""
    try:
        model = Classifier.load(
            Path(setup["path"]), Path(setup["labels"]), setup["output"], 1, setup["task"]
        )
        model.self_test(setup["sample"])
    except Exception as err:  # the worker refuses to start, with this reason
        return None, {"error": f"{type(err).__name__}: {err}"}
    comparison = Comparison(model, setup["tolerance"], setup["log_every"])
    return comparison, {"path": str(model.model_path), "sha256": model.sha256}


def idle() -> None:
    """Run only on CPU time nothing else wants: SCHED_IDLE where the OS has it (Linux), else
    the lowest priority (nice 19)."""
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, 19)


def main() -> None:
    """Serve the worker until its end of the pipe closes."""
    # The worker stops this process by closing the pipe; Ctrl-C on the service is the worker's.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    idle()
    source, sink = sys.stdin.buffer, os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    # Whatever else writes to stdout (ONNX Runtime's messages) must not corrupt the frames.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    # A worker that ended without closing the pipe is no error of this process's.
    with contextlib.suppress(BrokenPipeError), sink:
        comparison, reply = set_up(read_frame(source))
        sink.write(frame(reply))
        sink.flush()
        while comparison is not None and (jobs := read_frame(source)) is not None:
            sink.write(frame(comparison.batch(jobs)))
            sink.flush()


if __name__ == "__main__":
    main()
