"""Dependencies the routes declare: the loaded model and the settings, set up by the lifespan."""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from src.app.config import Settings
from src.app.metrics import TALLY
from src.ml.batching import Batcher
from src.ml.classifier import Classifier
from src.ml.shadow import Shadow

# This worker's shadow model (src.ml.shadow), when SHADOW_MODEL_FILEPATH names one: set by the
# lifespan. A list, so that the lifespan fills it in place.
SHADOWS: list[Shadow] = []
# This worker's batcher (src.ml.batching), when BATCH_MAX_SIZE is set: set by the lifespan.
BATCHERS: list[Batcher] = []


def get_classifier(request: Request) -> Classifier:
    """The model loaded for this worker."""
    classifier: Classifier = request.app.state.classifier
    return classifier


def get_settings(request: Request) -> Settings:
    """The settings read at start-up."""
    settings: Settings = request.app.state.settings
    return settings


ClassifierDep = Annotated[Classifier, Depends(get_classifier)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def infer(settings: Settings, predict: Callable[[Any], Any], rows: Any) -> Any:
    """Run inference inline (a small model is faster than a thread hop) or off the event loop.

    Every route that scores rows comes through here, the fast path's too: this is where the
    inference latency is measured (with batching on, the wait for batch-mates included), and
    where the shadow model is handed the prediction.
    """
    started = perf_counter()
    if BATCHERS and BATCHERS[0].takes(predict):
        result = await BATCHERS[0].predict(predict, rows)
    elif settings.offload_inference:
        result = await run_in_threadpool(predict, rows)
    else:
        result = predict(rows)
    TALLY.inference(perf_counter() - started)
    if SHADOWS:
        SHADOWS[0].offer(predict, rows, result)
    return result


def json_body(content: Any) -> bytes:
    """JSON bytes, numpy arrays included, in one pass of orjson."""
    return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def json_response(content: Any, status_code: int = 200) -> Response:
    """Serialise once with orjson instead of through the response model."""
    return Response(json_body(content), status_code=status_code, media_type="application/json")
