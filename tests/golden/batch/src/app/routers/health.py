"""Liveness, readiness and inventory."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from src.app import config
from src.app.deps import ClassifierDep, SettingsDep, json_response
from src.app.schemas import ErrorResponse, MetadataResponse
from src.release.state import last_swap

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness: the process answers")
async def health() -> dict[str, str]:
    """Always ``ok`` while the process serves requests."""
    return {"health": "ok"}


@router.get(
    "/ready",
    summary="Readiness: the model is loaded and passed its start-up test",
    responses={503: {"model": ErrorResponse, "description": "Not ready yet, or shutting down"}},
)
async def ready(request: Request) -> Response:
    """200 once the model answered its start-up test; 503 before that and while shutting down."""
    if getattr(request.app.state, "ready", False):
        return json_response({"ready": True})
    return json_response({"detail": "model not loaded"}, status_code=503)


@router.get("/metadata", response_model=MetadataResponse, summary="Which model, and how to call it")
async def metadata(classifier: ClassifierDep, settings: SettingsDep) -> Response:
    """The model file and its sha256, tensor names, dtypes and shapes, labels and versions."""
    info = classifier.metadata()
    if info["model_sha256"] == config.MODEL_SHA256:
        # onnxruntime does not expose the producer's version; the generator read it from the file.
        info["producer"] = config.MODEL_PRODUCER
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
        }
    )


@router.get("/label", summary="The label map: class index → name")
async def label(classifier: ClassifierDep) -> dict[str, str]:
    """The labels in the order of the scores ``/predict`` returns."""
    return {str(index): name for index, name in enumerate(classifier.labels)}
