"""Assembles the application: settings, lifespan (model, data store, cache), limits and routers.

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
from src.app.config import Settings, SettingsError
from src.app.limits import BUDGET_STATE_KEY, BodyBudget, BodySizeLimit
from src.app.observe import NO_TELEMETRY, Observe
from src.app.routers import health, monitoring, predict, v2
from src.data.cache import TensorCache, key_prefix
from src.data.guard import redacted
from src.data.store import DataStore, InvalidDataIdError, validate_data_id
from src.ml.batching import Batcher
from src.ml.classifier import Classifier, ModelLoadError
from src.ml.preprocess import tensor_shape
from src.ml.shadow import Shadow

logger = logging.getLogger(__name__)
# Seconds a stopping worker gives the gRPC calls under way.
STOP_GRACE_SECONDS = 5.0


def load_classifier(settings: Settings) -> Classifier:
    """The model, checked to take what preprocessing makes and tested on the sample rows."""
    classifier = Classifier.load(
        settings.model_filepath,
        settings.label_filepath,
        config.OUTPUT_NAME,
        settings.onnx_threads,
        config.TASK,
    )
    row_shape = classifier.metadata()["inputs"][0]["shape"][1:]
    if tuple(row_shape) != tensor_shape(config.IMAGE_SIDE):
        raise ModelLoadError(
            f"{settings.model_filepath}: takes rows of shape {row_shape}, but preprocessing makes "
            f"{list(tensor_shape(config.IMAGE_SIDE))} ({config.IMAGE_SIDE}x{config.IMAGE_SIDE} "
            "pixels)"
        )
    classifier.self_test(config.load_data_sample())
    return classifier


def open_cache(settings: Settings, store: DataStore) -> TensorCache:
    """The Redis tensor cache; nothing connects until it is used."""
    return TensorCache.connect(
        settings.redis_url,
        key_prefix(config.SERVICE_NAME, store.uri, config.IMAGE_SIDE),
        settings.cache_ttl_seconds,
        tensor_shape(config.IMAGE_SIDE),
        settings.redis_timeout_seconds,
    )


async def start_shadow(settings: Settings, primary: Classifier) -> Shadow | None:
    """The shadow model SHADOW_MODEL_FILEPATH names, loaded, tested and running; else None."""
    if settings.shadow_model_filepath is None:
        return None
    files = (settings.shadow_model_filepath, settings.label_filepath, config.OUTPUT_NAME)
    shadow = await Shadow.load(
        primary,
        files,
        config.load_data_sample(),
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
    """Load the model once per worker and test it; connect the store and the cache."""
    settings: Settings = app.state.settings
    try:
        validate_data_id(config.SAMPLE_DATA_ID)
    except InvalidDataIdError as err:
        raise SettingsError(f"sample_data_id {config.SAMPLE_DATA_ID!r}: {err}") from None
    classifier = load_classifier(settings)
    metrics.record_model(classifier)
    store = DataStore(settings.data_uri, settings.max_item_bytes)
    cache = open_cache(settings, store)
    app.state.classifier, app.state.store, app.state.cache = classifier, store, cache
    # Redis being down does not stop the service from starting: it serves uncached meanwhile.
    health_now = await cache.check()
    shadow = await start_shadow(settings, app.state.classifier)
    batcher = start_batcher(settings, app.state.classifier)
    grpc_server = await start_grpc(settings, app.state)
    # Everything loaded so far lives as long as the worker: keep the collector from rescanning it.
    gc.collect()
    gc.freeze()
    app.state.ready = True
    logger.info("model ready: %s sha256=%s", classifier.model_path, classifier.sha256)
    logger.info(
        "data store %s; cache %s at %s (ttl %d s)",
        store.uri,
        health_now,
        redacted(settings.redis_url),
        settings.cache_ttl_seconds,
    )
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
    await cache.close()


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
    app.include_router(v2.router)
    app.include_router(monitoring.router)
    # The outermost of the service's own middleware: it observes every answer.
    app.add_middleware(
        Observe,
        request_log=app.state.settings.request_log,
        log_format=app.state.settings.log_format,
    )
    return app
