"""Adaptive batching (BATCH_MAX_SIZE, BATCH_MAX_DELAY_MS): requests that arrive together, one call.

The batcher runs on the served model itself; every answer is checked against the model's answer
for the same request alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from src.app import config, deps
from src.app.config import Settings
from src.app.main import create_app
from src.ml.batching import Batcher
from src.ml.classifier import Classifier

REQUESTS = 24


def sample() -> list[Any]:
    """The rows the served model passes its start-up test with."""
    return list(config.DATA_SAMPLE)


@pytest.fixture(scope="module")
def model() -> Classifier:
    settings = Settings.from_env({})
    return Classifier.load(
        settings.model_filepath, settings.label_filepath, config.OUTPUT_NAME, 1, config.TASK
    )


def varied(value: Any, step: int) -> Any:
    """``value`` with every float scaled by a step's own factor: rows that differ."""
    if isinstance(value, float):
        return value * (1 + 0.07 * step)
    if isinstance(value, list):
        return [varied(item, step) for item in value]
    if isinstance(value, dict):
        return {key: varied(item, step) for key, item in value.items()}
    return value


def requests(count: int) -> list[list[Any]]:
    """``count`` requests of 1 to 3 rows each, every row its own."""
    rows = sample()
    made = []
    for index in range(count):
        size = 1 + index % 3
        made.append([varied(rows[(index + k) % len(rows)], index * 3 + k) for k in range(size)])
    return made


def methods(model: Classifier) -> list[Callable[[Any], Any]]:
    """What the routes ask of the model: scores, and labels where there are labels."""
    return [model.predict, model.predict_labels] if model.labels else [model.predict]


def same(answer: Any, expected: Any) -> bool:
    """Equal labels, or numbers within float32's rounding of a bigger call."""
    if isinstance(expected, dict):
        return answer.keys() == expected.keys() and all(
            same(answer[key], value) for key, value in expected.items()
        )
    expected_array = np.asarray(expected)
    if expected_array.dtype.kind in "OUS":
        return bool(list(answer) == list(expected))
    return bool(np.allclose(np.asarray(answer), expected_array, rtol=1e-4, atol=1e-5))


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def batched(
    model: Classifier, calls: list[tuple[Callable[[Any], Any], list[Any]]], **limits: Any
) -> list[Any]:
    """Every call's answer (or exception) through one batcher, all submitted at once."""
    batcher = Batcher(model, **limits)
    batcher.start()
    try:
        tasks = [batcher.predict(predict, rows) for predict, rows in calls]
        return await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await batcher.stop()


def test_every_request_gets_the_answers_to_its_own_rows_in_order(model: Classifier) -> None:
    calls = [
        (methods(model)[i % len(methods(model))], rows) for i, rows in enumerate(requests(REQUESTS))
    ]
    batches_before = metric("inference_batch_requests_count")
    answers = asyncio.run(batched(model, calls, max_rows=16, max_delay_seconds=0.05))
    for (predict, rows), answer in zip(calls, answers, strict=True):
        assert same(answer, predict(rows)), (rows, answer)
    # Fewer calls of the model than requests: they were batched.
    assert metric("inference_batch_requests_count") - batches_before < REQUESTS


def test_a_batch_never_holds_more_rows_than_the_limit(model: Classifier) -> None:
    calls = [(model.predict, rows) for rows in requests(REQUESTS)]
    big = [varied(row, 99) for row in (sample() * 5)[:5]]
    calls.append((model.predict, big))
    before = metric("inference_batch_rows_count"), metric("inference_batch_rows_bucket", le="4.0")
    answers = asyncio.run(batched(model, calls, max_rows=4, max_delay_seconds=0.05))
    for (predict, rows), answer in zip(calls, answers, strict=True):
        assert same(answer, predict(rows))
    batches = metric("inference_batch_rows_count") - before[0]
    assert batches > 0
    assert metric("inference_batch_rows_bucket", le="4.0") - before[1] == batches


def test_a_request_the_model_refuses_fails_alone(model: Classifier) -> None:
    calls = [(model.predict, rows) for rows in requests(6)]
    first = sample()[0]
    # A row short of one value (or one input) reaches no route (validation refuses it), but the
    # model refuses it too: the one way to make the batch's call fail here.
    short = first[:-1] if isinstance(first, list) else dict(list(first.items())[:-1])
    calls.insert(3, (model.predict, [short]))
    answers = asyncio.run(batched(model, calls, max_rows=64, max_delay_seconds=0.05))
    assert isinstance(answers[3], Exception)
    for index, ((predict, rows), answer) in enumerate(zip(calls, answers, strict=True)):
        if index != 3:
            assert same(answer, predict(rows))


def test_a_lone_request_waits_for_batch_mates_no_longer_than_the_delay(model: Classifier) -> None:
    rows = requests(1)[0]
    started = time.monotonic()
    [answer] = asyncio.run(
        batched(model, [(model.predict, rows)], max_rows=64, max_delay_seconds=0.2)
    )
    waited = time.monotonic() - started
    assert same(answer, model.predict(rows))
    # It waited for others (the delay, less the millisecond the timer is set ahead), then went
    # alone; the upper bound leaves a slow machine room.
    assert 0.2 - 0.002 <= waited < 2.0


def test_a_request_whose_client_left_leaves_the_others_their_answers(model: Classifier) -> None:
    calls = requests(3)

    async def scenario() -> list[Any]:
        batcher = Batcher(model, max_rows=64, max_delay_seconds=0.1)
        batcher.start()
        try:
            tasks = [asyncio.create_task(batcher.predict(model.predict, rows)) for rows in calls]
            await asyncio.sleep(0.01)
            tasks[1].cancel()
            return await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await batcher.stop()

    answers = asyncio.run(scenario())
    assert isinstance(answers[1], asyncio.CancelledError)
    assert same(answers[0], model.predict(calls[0]))
    assert same(answers[2], model.predict(calls[2]))


@pytest.fixture
def batching_service(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("BATCH_MAX_SIZE", "8")
    monkeypatch.setenv("BATCH_MAX_DELAY_MS", "20")
    with TestClient(create_app()) as client:
        yield client


def test_the_service_batches_its_predictions(
    batching_service: TestClient, model: Classifier
) -> None:
    client = batching_service
    app: Any = client.app
    settings, served = app.state.settings, app.state.classifier
    assert deps.BATCHERS, "BATCH_MAX_SIZE=8 starts a batcher"
    calls = requests(REQUESTS)
    before = metric("inference_batch_requests_count")

    def infer(rows: list[Any]) -> Any:
        return client.portal.call(deps.infer, settings, served.predict, rows)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(infer, calls))
    for rows, answer in zip(calls, answers, strict=True):
        assert same(answer, model.predict(rows))
    assert 0 < metric("inference_batch_requests_count") - before < REQUESTS
    assert "inference_batch_rows_bucket" in client.get("/metrics").text
