"""Assembles the proxy: rows validated here, fanned out to every backend, the answers combined.

``POST /predict`` takes the same rows as a backend (checked against the same model signature, so
bad input is refused here with a 422 naming the field, without asking any backend), asks every
backend at once (``src.proxy.fanout``) and answers when all have answered or timed out. A missing
backend makes a partial answer that names it; only when no backend answers is the answer a 503 (or
a 504 when every one timed out). Gunicorn calls the factory (``src.proxy.main:create_app()``, see
run-proxy.sh), so importing this module does no work.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response, status

from src.app import config, docs, errors
from src.app.deps import json_response
from src.app.limits import BUDGET_STATE_KEY, BodyBudget, BodySizeLimit
from src.app.observe import NO_TELEMETRY, Observe
from src.app.routers import monitoring
from src.app.schemas import ErrorResponse, PredictRequest
from src.proxy.config import ProxySettings
from src.proxy.fanout import Backends, Outcome, every, highest

logger = logging.getLogger(__name__)
# httpx2 logs every request at INFO: a line per backend for every request would bury the log.
logging.getLogger("httpx2").setLevel(logging.WARNING)

router = APIRouter(tags=["proxy"])
REFUSALS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorResponse, "description": "Too many rows, or the body is too large"},
    415: {"model": ErrorResponse, "description": "The body is not declared as UTF-8 JSON"},
    422: {"model": ErrorResponse, "description": "The input does not fit the models"},
    503: {"model": ErrorResponse, "description": "No backend could be reached"},
    504: {"model": ErrorResponse, "description": "No backend answered in time"},
}


def _none_answered(outcomes: list[Outcome]) -> Response:
    reasons = "; ".join(f"{outcome.name}: {outcome.problem}" for outcome in outcomes)
    timed_out = all(outcome.timed_out for outcome in outcomes)
    code = status.HTTP_504_GATEWAY_TIMEOUT if timed_out else status.HTTP_503_SERVICE_UNAVAILABLE
    logger.warning("no backend answered: %s", reasons)
    response = json_response({"detail": f"no backend answered: {reasons}"}, status_code=code)
    if code == status.HTTP_503_SERVICE_UNAVAILABLE:
        response.headers["retry-after"] = "1"
    return response


@router.post("/predict", responses=REFUSALS, summary="Every backend's answer, combined")
async def predict(payload: PredictRequest, request: Request) -> Response:
    """Ask every backend; ``highest``: per row the backend whose "yes" scored highest, with every
    backend's score; ``all``: every backend's scores by name. ``missing`` names the backends left
    out (down, refusing, or later than the timeout) and why.
    """
    settings: ProxySettings = request.app.state.settings
    rows = len(payload.data)
    if rows > settings.common.max_rows:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"data: {rows} rows; at most {settings.common.max_rows} per request",
        )
    backends: Backends = request.app.state.backends
    body = orjson.dumps({"data": payload.data}, option=orjson.OPT_SERIALIZE_NUMPY)
    outcomes = await backends.ask_all(body, rows)
    if all(outcome.scores is None for outcome in outcomes):
        return _none_answered(outcomes)
    if settings.aggregate == "highest":
        return json_response(highest(outcomes, rows))
    return json_response(every(outcomes))


@router.get("/health", summary="Liveness: the process answers")
async def health() -> dict[str, str]:
    """Always ``ok`` while the process serves requests."""
    return {"health": "ok"}


@router.get("/v2/health/live", summary="Liveness, as V2 servers say it (the probes ask this)")
async def v2_live() -> Response:
    """200 while the process serves requests."""
    return Response(status_code=status.HTTP_200_OK)


@router.get("/v2/health/ready", summary="Readiness, as V2 servers say it (the probes ask this)")
async def v2_ready(request: Request) -> Response:
    """200 once started (the backends are not asked: /ready says how they are), 503 before."""
    started = getattr(request.app.state, "ready", False)
    return Response(status_code=status.HTTP_200_OK if started else 503)


@router.get("/ready", summary="Readiness, and each backend's")
async def ready(request: Request) -> Response:
    """200 once started, with every backend's readiness (``ok`` or why not).

    Backends being down does not make the proxy unready: it still answers with the others, and
    says which are missing.
    """
    if not getattr(request.app.state, "ready", False):
        return json_response({"detail": "starting or stopping"}, status_code=503)
    return json_response({"ready": True, "backends": await request.app.state.backends.readiness()})


@router.get("/metadata", summary="The backends and how their answers are combined")
async def metadata(request: Request) -> Response:
    """The proxy's name and version, the backends' URLs, the aggregation and the timeout."""
    settings: ProxySettings = request.app.state.settings
    return json_response(
        {
            "name": config.SERVICE_NAME,
            "version": config.SERVICE_VERSION,
            "pattern": config.PATTERN,
            "builder_version": config.BUILDER_VERSION,
            "aggregate": settings.aggregate,
            "backends": settings.backends,
            "timeout_seconds": settings.timeout_seconds,
            "data_sample": config.DATA_SAMPLE,
        }
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, BodyBudget]]:
    """Open the backends' connection pool; close it at shutdown."""
    settings: ProxySettings = app.state.settings
    app.state.backends = Backends(settings)
    app.state.ready = True
    logger.info("proxy ready: %s, %s", settings.aggregate, ", ".join(settings.backends))
    yield {BUDGET_STATE_KEY: app.state.body_budget}
    app.state.ready = False
    await app.state.backends.close()


def create_app(settings: ProxySettings | None = None) -> FastAPI:
    """Build the proxy; ``settings`` default to the environment."""
    settings = settings or ProxySettings.from_env()
    app = FastAPI(
        title=f"{config.SERVICE_NAME} proxy",
        version=config.SERVICE_VERSION,
        description=config.DESCRIPTION,
        lifespan=lifespan,
        telemetry=None if settings.common.opentelemetry else NO_TELEMETRY,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.ready = False
    app.state.body_budget = BodyBudget(settings.common.max_body_bytes_in_flight)
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.common.max_body_bytes, budget=app.state.body_budget
    )
    errors.install(app)
    docs.install(app)
    app.include_router(router)
    app.include_router(monitoring.router)
    app.add_middleware(
        Observe, request_log=settings.common.request_log, log_format=settings.common.log_format
    )
    return app
