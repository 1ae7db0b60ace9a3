"""Assembles the prep service: an uploaded image is preprocessed here and predicted there.

``POST /predict`` and ``POST /predict/label`` take an image's bytes as the request body (PNG, JPEG,
BMP, GIF, TIFF or WEBP), preprocess them in a worker thread (``src.ml.preprocess``) and ask the
prediction service for the row's scores (``src.prep.client``). The request ID, request log and
metrics are the prediction service's own (``src.app.observe``). Gunicorn calls the factory
(``src.prep.main:create_app()``, see run-prep.sh), so importing this module does no work.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response, status
from starlette.concurrency import run_in_threadpool

from src.app import docs, errors
from src.app.config import SERVICE_VERSION
from src.app.deps import json_response
from src.app.limits import (
    BUDGET_STATE_KEY,
    BUSY,
    BodiesInFlightError,
    BodyBudget,
    BodyTooLargeError,
    read_body,
)
from src.app.observe import NO_TELEMETRY, Observe
from src.app.routers import monitoring
from src.ml.preprocess import FORMATS, ImageDecodeError, preprocess
from src.prep.client import PredictionClient, PredictionError
from src.prep.config import IMAGE_SIDE, PrepSettings

logger = logging.getLogger(__name__)
# httpx2 logs every request at INFO: a line per call of the prediction service would bury the log.
logging.getLogger("httpx2").setLevel(logging.WARNING)

router = APIRouter(tags=["prep"])
IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "description": f"The image's bytes ({', '.join(FORMATS)}).",
        "content": {
            kind: {"schema": {"type": "string", "format": "binary"}}
            for kind in ("image/png", "image/jpeg", "application/octet-stream")
        },
    }
}
REFUSALS: dict[int | str, dict[str, Any]] = {
    413: {"description": "The image is larger than MAX_IMAGE_BYTES"},
    415: {"description": "The body is not declared as an image"},
    422: {"description": "The body is empty, or not an image this service reads"},
    502: {"description": "The prediction service answered, but not with scores"},
    503: {"description": "The prediction service cannot be reached or is busy; retry later"},
    504: {"description": "The prediction service did not answer in time"},
}


def _declared_type_problem(request: Request) -> str | None:
    declared = request.headers.get("content-type")
    if declared is None:
        return None
    media = declared.partition(";")[0].strip().lower()
    if media.startswith("image/") or media == "application/octet-stream":
        return None
    expected = "an image (image/png, ...) or application/octet-stream"
    return f"Content-Type {media[:100]!r}: expected {expected}"


async def _read_image(request: Request) -> bytes:
    """The body, held in the worker's body budget (given back by the caller)."""
    problem = _declared_type_problem(request)
    if problem is not None:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, problem)
    state = request.app.state
    limit = state.settings.max_image_bytes
    try:
        return await read_body(request.scope, request.receive, limit, state.body_budget)
    except BodyTooLargeError:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, f"body: the image exceeds {limit} bytes"
        ) from None
    except BodiesInFlightError:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, BUSY, headers={"retry-after": "1"}
        ) from None


async def _row(request: Request) -> np.ndarray:
    """The model-input row of the uploaded image; an HTTPException says why there is none."""
    data = await _read_image(request)
    try:
        if not data:
            raise ImageDecodeError("empty; send the image's bytes as the request body")
        # Decoding and resizing take a while for a large image: off the event loop.
        return await run_in_threadpool(preprocess, data, IMAGE_SIDE)
    except ImageDecodeError as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"body: {err}") from None
    finally:
        request.app.state.body_budget.give_back(len(data))


def _failed(err: PredictionError) -> Response:
    logger.warning("prediction service: %s", err.reason)
    response = json_response({"detail": err.reason}, status_code=err.status)
    if err.status == status.HTTP_503_SERVICE_UNAVAILABLE:
        response.headers["retry-after"] = "1"
    return response


@router.post(
    "/predict",
    summary="Class scores of an uploaded image",
    responses=REFUSALS,
    openapi_extra=IMAGE_BODY,
)
async def predict(request: Request) -> Response:
    """The image, preprocessed here and scored there: ``{"prediction": [[scores]]}``."""
    row = await _row(request)
    try:
        scores = await request.app.state.client.scores(row)
    except PredictionError as err:
        return _failed(err)
    return json_response({"prediction": [scores]})


@router.post(
    "/predict/label",
    summary="Label of an uploaded image",
    responses=REFUSALS,
    openapi_extra=IMAGE_BODY,
)
async def predict_label(request: Request) -> Response:
    """The image's most likely label: ``{"prediction": ["<label>"]}``."""
    row = await _row(request)
    client: PredictionClient = request.app.state.client
    try:
        scores = await client.scores(row)
        labels = await client.labels()
    except PredictionError as err:
        return _failed(err)
    if len(labels) != len(scores):
        return _failed(
            PredictionError(502, f"{len(scores)} scores but {len(labels)} labels from the service")
        )
    return json_response({"prediction": [labels[int(np.argmax(scores))]]})


@router.get("/health", summary="Liveness: the process answers")
async def health() -> dict[str, str]:
    """Always ``ok`` while the process serves requests."""
    return {"health": "ok"}


@router.get("/ready", summary="Readiness, and whether the prediction service is ready")
async def ready(request: Request) -> Response:
    """200 once started, with ``prediction_service`` ``ok`` or ``unavailable`` (and why).

    The prediction service being down does not make this one unready: taking every prep replica
    out of service would not bring it back, and clients get a 503 saying why meanwhile.
    """
    if not getattr(request.app.state, "ready", False):
        return json_response({"detail": "starting or stopping"}, status_code=503)
    problem = await request.app.state.client.check()
    upstream = "ok" if problem is None else "unavailable"
    return json_response({"ready": True, "prediction_service": upstream, "detail": problem})


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, BodyBudget]]:
    """Open the prediction service's connection pool; close it at shutdown."""
    settings: PrepSettings = app.state.settings
    app.state.client = PredictionClient(settings)
    app.state.ready = True
    logger.info("prep ready: predictions from %s%s", settings.pred_url, app.state.client.infer_path)
    yield {BUDGET_STATE_KEY: app.state.body_budget}
    app.state.ready = False
    await app.state.client.close()


def create_app(settings: PrepSettings | None = None) -> FastAPI:
    """Build the prep service; ``settings`` default to the environment."""
    settings = settings or PrepSettings.from_env()
    app = FastAPI(
        title="prep",
        version=SERVICE_VERSION,
        description="Preprocesses uploaded images for the prediction service.",
        lifespan=lifespan,
        telemetry=None if settings.common.opentelemetry else NO_TELEMETRY,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.ready = False
    # What this worker holds of request bodies and unfinished heads (src.http_guard too).
    app.state.body_budget = BodyBudget(settings.common.max_body_bytes_in_flight)
    errors.install(app)
    docs.install(app)
    app.include_router(router)
    app.include_router(monitoring.router)
    app.add_middleware(
        Observe, request_log=settings.common.request_log, log_format=settings.common.log_format
    )
    return app
