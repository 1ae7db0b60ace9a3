"""Assembles the application: settings, lifespan (model, predictions store), limits and routers.

Gunicorn calls the factory (``src.app.main:create_app()``), so importing this module does no work.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from src.app import config, deps, docs, errors, metrics
from src.app.config import Settings
from src.app.fast import FastRoutes
from src.app.limits import BUDGET_STATE_KEY, BodyBudget, BodySizeLimit
from src.app.observe import NO_TELEMETRY, Observe
from src.app.predictions import PredictionStore, redacted
from src.app.routers import health, monitoring, predict, predictions, v2
from src.ml.batching import Batcher
from src.ml.classifier import Classifier
from src.ml.shadow import Shadow

logger = logging.getLogger(__name__)
# Seconds a stopping worker gives the gRPC calls under way.
STOP_GRACE_SECONDS = 5.0


async def start_shadow(settings: Settings, primary: Classifier) -> Shadow | None:
    """The shadow model SHADOW_MODEL_FILEPATH names, loaded, tested and running; else None."""
    if settings.shadow_model_filepath is None:
        return None
    files = (settings.shadow_model_filepath, settings.label_filepath, config.OUTPUT_NAME)
    shadow = await Shadow.load(
        primary,
        files,
        config.DATA_SAMPLE,
        queue_size=settings.shadow_queue_size,
        tolerance=settings.shadow_tolerance,
        log_every=settings.shadow_log_every,
    )
    deps.SHADOWS[:] = [shadow]
    logger.info("shadow model ready: %s sha256=%s", shadow.model_path, shadow.sha256)
    return shadow


def start_batcher(settings: Settings, model: Classifier) -> Batcher | None:
    """The batcher BATCH_MAX_SIZE asks for, running; else None."""
    if not settings.batch_max_size:
        return None
    batcher = Batcher(model, settings.batch_max_size, settings.batch_max_delay_ms / 1000)
    batcher.start()
    deps.BATCHERS[:] = [batcher]
    logger.info(
        "adaptive batching: up to %d rows, %g ms",
        settings.batch_max_size,
        settings.batch_max_delay_ms,
    )
    return batcher


async def start_grpc(settings: Settings, state: Any) -> Any:
    """The V2 gRPC server GRPC_PORT asks for, answering; else None."""
    if not settings.grpc_port:
        return None
    # Imported only when served: grpc takes a tenth of a second to import, and the protocol's
    # messages would clash with a client's own copy of them in one process (the tests').
    from src.app import v2_grpc

    server = await v2_grpc.serve(
        state, settings.grpc_host, settings.grpc_port, settings.max_body_bytes
    )
    logger.info("V2 gRPC on port %d", settings.grpc_port)
    return server


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, BodyBudget]]:
    """Load the model once per worker and test it before the worker reports ready."""
    settings: Settings = app.state.settings
    classifier = Classifier.load(
        settings.model_filepath,
        settings.label_filepath,
        config.OUTPUT_NAME,
        settings.onnx_threads,
        config.TASK,
    )
    classifier.self_test(config.DATA_SAMPLE)
    app.state.classifier = classifier
    metrics.record_model(classifier)
    # Nothing connects until a prediction is asked for: the online model serves without it.
    app.state.predictions = PredictionStore(
        settings.database_url, settings.database_timeout_seconds
    )
    shadow = await start_shadow(settings, app.state.classifier)
    batcher = start_batcher(settings, app.state.classifier)
    grpc_server = await start_grpc(settings, app.state)
    # Everything loaded so far lives as long as the worker: keep the collector from rescanning it.
    gc.collect()
    gc.freeze()
    app.state.ready = True
    logger.info("model ready: %s sha256=%s", classifier.model_path, classifier.sha256)
    logger.info("published predictions read from %s", redacted(settings.database_url))
    # The server (src.http_guard) charges unfinished request heads to the same budget.
    yield {BUDGET_STATE_KEY: app.state.body_budget}
    # Stop advertising readiness first, so a load balancer drains this worker during shutdown.
    app.state.ready = False
    if grpc_server is not None:
        await grpc_server.stop(STOP_GRACE_SECONDS)
    if shadow is not None:
        await shadow.stop()
        deps.SHADOWS.clear()
    if batcher is not None:
        await batcher.stop()
        deps.BATCHERS.clear()
    await app.state.predictions.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service; ``settings`` default to the environment."""
    settings = settings or Settings.from_env()
    app = FastAPI(
        title=config.SERVICE_NAME,
        version=config.SERVICE_VERSION,
        description=config.DESCRIPTION,
        lifespan=lifespan,
        # FastAPI's OpenTelemetry bridge looks for configured providers on every request, even
        # when there are none: a few microseconds each, so it is on only when asked for.
        telemetry=None if settings.opentelemetry else NO_TELEMETRY,
        # /docs is served by src.app.docs, with no CDN; ReDoc would need one.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.ready = False
    # Shared by the body limit and the fast path: what this worker holds of request bodies.
    app.state.body_budget = BodyBudget(settings.max_body_bytes_in_flight)
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.max_body_bytes, budget=app.state.body_budget
    )
    errors.install(app)
    docs.install(app)
    app.include_router(health.router)
    app.include_router(predict.router)
    app.include_router(predictions.router)
    app.include_router(v2.router)
    app.include_router(monitoring.router)
    if app.state.settings.fast_path:
        app.add_middleware(FastRoutes)
    # Added after FastRoutes, so it runs outside it and observes the fast path's answers too.
    app.add_middleware(
        Observe,
        request_log=app.state.settings.request_log,
        log_format=app.state.settings.log_format,
    )
    return app
