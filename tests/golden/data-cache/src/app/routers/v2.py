"""The Open Inference Protocol (KServe V2) REST endpoints, beside the service's own.

Health, server and model metadata, model readiness and inference, with and without
``/versions/{model_version}``. ``src.app.v2`` says what a request may hold.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from src.app.config import Settings
from src.app.deps import ClassifierDep, SettingsDep, infer, json_body, json_response
from src.app.limits import BUSY_DESCRIPTION
from src.app.v2 import (
    HEADER_LENGTH,
    ErrorResponse,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ProtocolError,
    ServerMetadata,
    answer,
    decode,
    describe,
    server_metadata,
    wanted_outputs,
)
from src.ml.classifier import Classifier, ModelInputError, finite_outputs

router = APIRouter(prefix="/v2", tags=["v2"])
MODEL = "/models/{model_name}"
VERSION = "/models/{model_name}/versions/{model_version}"
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such model or version"}
}
REFUSALS: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    400: {"model": ErrorResponse, "description": "The request does not fit the model"},
    413: {"model": ErrorResponse, "description": "Too many rows, or the body is too large"},
    415: {"model": ErrorResponse, "description": "The body is not declared as JSON"},
    503: {"model": ErrorResponse, "description": BUSY_DESCRIPTION},
}


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    """``node`` with every ``$ref`` to ``definitions`` replaced by the definition itself."""
    if isinstance(node, dict):
        if "$ref" in node:
            return _inline(definitions[node["$ref"].rsplit("/", 1)[-1]], definitions)
        return {key: _inline(value, definitions) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    return node


def _request_schema() -> dict[str, Any]:
    # The body is read raw (to answer in the protocol's error shape), so the OpenAPI schema
    # of the request is given by hand, self-contained.
    schema = InferenceRequest.model_json_schema()
    definitions = schema.pop("$defs", {})
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inline(schema, definitions)}},
        }
    }


def _refused(err: ProtocolError) -> Response:
    return json_response({"error": err.message}, status_code=err.status)


@router.get("/health/live", summary="V2 liveness: the process answers")
async def live() -> dict[str, bool]:
    """Always ``{"live": true}`` while the process serves requests."""
    return {"live": True}


@router.get(
    "/health/ready",
    summary="V2 readiness: the model is loaded and passed its start-up test",
    responses={503: {"description": "Not ready yet, or shutting down"}},
)
async def ready(request: Request) -> Response:
    """200 once the model answered its start-up test; 503 before that and while shutting down.

    It asks nothing of the pattern's other components (no Redis round trip): a cheap probe.
    """
    is_ready = bool(getattr(request.app.state, "ready", False))
    return json_response({"ready": is_ready}, status_code=200 if is_ready else 503)


@router.get("", response_model=ServerMetadata, summary="V2 server metadata")
async def server() -> Response:
    """The server's name and version (the service's) and its protocol extensions."""
    return json_response(server_metadata())


async def _metadata(classifier: Classifier, model_name: str, model_version: str | None) -> Response:
    model = describe(classifier)
    try:
        model.check(model_name, model_version)
    except ProtocolError as err:
        return _refused(err)
    return json_response(model.metadata())


@router.get(MODEL, response_model=ModelMetadata, responses=NOT_FOUND, summary="V2 model metadata")
async def model_metadata(model_name: str, classifier: ClassifierDep) -> Response:
    """The model's name, version, platform and input and output tensors."""
    return await _metadata(classifier, model_name, None)


@router.get(VERSION, response_model=ModelMetadata, responses=NOT_FOUND, summary="V2 model metadata")
async def version_metadata(
    model_name: str, model_version: str, classifier: ClassifierDep
) -> Response:
    """The same, for one version (the image tag is the only one)."""
    return await _metadata(classifier, model_name, model_version)


async def _model_ready(
    request: Request, classifier: Classifier, model_name: str, model_version: str | None
) -> Response:
    try:
        describe(classifier).check(model_name, model_version)
    except ProtocolError as err:
        return _refused(err)
    is_ready = bool(getattr(request.app.state, "ready", False))
    body = {"name": model_name, "ready": is_ready}
    return json_response(body, status_code=200 if is_ready else 503)


@router.get(MODEL + "/ready", responses=NOT_FOUND, summary="V2 model readiness")
async def model_ready(request: Request, model_name: str, classifier: ClassifierDep) -> Response:
    """200 when the model can answer, 503 when not (yet or any more)."""
    return await _model_ready(request, classifier, model_name, None)


@router.get(VERSION + "/ready", responses=NOT_FOUND, summary="V2 model readiness")
async def version_ready(
    request: Request, model_name: str, model_version: str, classifier: ClassifierDep
) -> Response:
    """The same, for one version."""
    return await _model_ready(request, classifier, model_name, model_version)


async def _infer(
    request: Request,
    settings: Settings,
    classifier: Classifier,
    model_name: str,
    model_version: str | None,
) -> Response:
    model = describe(classifier)
    try:
        model.check(model_name, model_version)
        body = await request.body()
        call, feeds = decode(body, request.headers.get(HEADER_LENGTH), model, settings.max_rows)
        names = wanted_outputs(call, model)
        results = await infer(
            settings, lambda arrays: finite_outputs(classifier.run(arrays, names)), feeds
        )
    except ProtocolError as err:
        return _refused(err)
    except ModelInputError as err:
        return _refused(ProtocolError(400, str(err)))
    content, binary = answer(call, model, names, results)
    if not binary:
        return json_response(content)
    header = json_body(content)
    return Response(
        header + binary,
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(header))},
    )


@router.post(
    MODEL + "/infer",
    response_model=InferenceResponse,
    responses=REFUSALS,
    openapi_extra=_request_schema(),
    summary="V2 inference",
)
async def model_infer(
    request: Request, model_name: str, settings: SettingsDep, classifier: ClassifierDep
) -> Response:
    """The model's outputs for the input tensors, in JSON or as binary data, as asked."""
    return await _infer(request, settings, classifier, model_name, None)


@router.post(
    VERSION + "/infer",
    response_model=InferenceResponse,
    responses=REFUSALS,
    openapi_extra=_request_schema(),
    summary="V2 inference",
)
async def version_infer(
    request: Request,
    model_name: str,
    model_version: str,
    settings: SettingsDep,
    classifier: ClassifierDep,
) -> Response:
    """The same, for one version."""
    return await _infer(request, settings, classifier, model_name, model_version)
