"""Liveness, readiness (with the answer cache's health) and inventory."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from src.app import config
from src.app.deps import ClassifierDep, SettingsDep, json_response
from src.app.schemas import ErrorResponse, MetadataResponse, ReadyResponse
from src.cache.answers import AnswerCache
from src.release.state import last_swap

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness: the process answers")
async def health() -> dict[str, str]:
    """Always ``ok`` while the process serves requests."""
    return {"health": "ok"}


@router.get(
    "/ready",
    response_model=ReadyResponse,
    summary="Readiness: the model passed its start-up test; the cache's health",
    responses={503: {"model": ErrorResponse, "description": "Not ready yet, or shutting down"}},
)
async def ready(request: Request) -> Response:
    """200 once the model answered its start-up test, with ``cache`` ``ok`` or ``degraded``.

    A degraded cache keeps the service ready: the model answers every request until Redis is back.
    """
    if not getattr(request.app.state, "ready", False):
        return json_response({"detail": "model not loaded"}, status_code=503)
    cache: AnswerCache = request.app.state.answer_cache
    return json_response({"ready": True, "cache": await cache.check()})


@router.get("/metadata", response_model=MetadataResponse, summary="Which model, and how to call it")
async def metadata(request: Request, classifier: ClassifierDep, settings: SettingsDep) -> Response:
    """The model file and its sha256, tensors, labels, versions, and the answer cache."""
    info = classifier.metadata()
    if info["model_sha256"] == config.MODEL_SHA256:
        # onnxruntime does not expose the producer's version; the generator read it from the file.
        info["producer"] = config.MODEL_PRODUCER
    cache: AnswerCache = request.app.state.answer_cache
    return json_response(
        {
            "name": config.SERVICE_NAME,
            "version": config.SERVICE_VERSION,
            "pattern": config.PATTERN,
            "builder_version": config.BUILDER_VERSION,
            **info,
            "last_swap": last_swap(),
            "data_sample": config.DATA_SAMPLE,
            "max_rows": settings.max_rows,
            "cache": {
                "key_prefix": cache.prefix,
                "ttl_seconds": cache.ttl_seconds,
                "health": cache.health,
            },
        }
    )


@router.get("/label", summary="The label map: class index → name")
async def label(classifier: ClassifierDep) -> dict[str, str]:
    """The labels in the order of the scores ``/predict`` returns."""
    return {str(index): name for index, name in enumerate(classifier.labels)}
