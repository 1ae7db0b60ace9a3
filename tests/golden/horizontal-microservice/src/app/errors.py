"""How refused requests look: the offending field and why, never the payload echoed back."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from src.app.deps import json_response
from src.app.limits import (
    BUSY,
    NOT_UTF8,
    BodiesInFlightError,
    BodyTooLargeError,
    NotUtf8Error,
    error_key,
)
from src.ml.classifier import ModelInputError

logger = logging.getLogger(__name__)


async def validation_error(_request: Request, exc: Exception) -> Response:
    """422 with ``loc``, ``msg`` and ``type`` of each problem; the input itself is left out."""
    if not isinstance(exc, RequestValidationError):
        raise exc
    return json_response({"detail": error_detail(exc.errors())}, status_code=422)


def error_detail(errors: Sequence[Any], prefix: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Where each problem is (``loc``), what it is (``msg``) and its ``type``; never the input."""
    return [
        {"loc": [*prefix, *error["loc"]], "msg": error["msg"], "type": error["type"]}
        for error in errors
    ]


def model_refusal(err: ModelInputError) -> list[dict[str, Any]]:
    """The detail of a 422 for input that passed validation but that the model refused."""
    return [{"loc": ["body", "data"], "msg": str(err), "type": "model_refused"}]


async def model_input_error(_request: Request, exc: Exception) -> Response:
    """422 naming ``data``: the model itself refused the rows (an unknown category, say)."""
    if not isinstance(exc, ModelInputError):
        raise exc
    return json_response({"detail": model_refusal(exc)}, status_code=422)


async def undecodable_body(request: Request, exc: Exception) -> Response:
    """413, 503 or 422 for a body FastAPI could not read; other HTTP errors as FastAPI would.

    FastAPI answers 400, raised from the error, when reading the body fails: the size limit or
    the worker's body budget hit while a body streams in, or a body in UTF-16 or UTF-32
    (BodySizeLimit raises inside FastAPI's read), or bytes that are no JSON text (nesting too
    deep for the parser). Elsewhere, the fast path included, those are a 413, a 503, a 415 and a
    422, and 400 is not in the OpenAPI schema.
    """
    if not isinstance(exc, HTTPException):
        raise exc
    key = error_key(request.url.path)
    if exc.status_code == 400 and isinstance(exc.__cause__, BodyTooLargeError):
        limit = request.app.state.settings.max_body_bytes
        return json_response({key: f"request body exceeds {limit} bytes"}, status_code=413)
    if exc.status_code == 400 and isinstance(exc.__cause__, NotUtf8Error):
        return json_response({key: NOT_UTF8}, status_code=415)
    if exc.status_code == 400 and isinstance(exc.__cause__, BodiesInFlightError):
        answer = json_response({key: BUSY}, status_code=503)
        answer.headers.update({"retry-after": "1", "connection": "close"})
        return answer
    if exc.status_code == 400 and exc.__cause__ is not None:
        problem = {"loc": ["body"], "msg": "Invalid JSON: not decodable", "type": "json_invalid"}
        return json_response({"detail": [problem]}, status_code=422)
    return await http_exception_handler(request, exc)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    """Log what broke; answer 500 without internals."""
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return json_response({"detail": "internal error"}, status_code=500)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, undecodable_body)
    app.add_exception_handler(ModelInputError, model_input_error)
    app.add_exception_handler(Exception, unexpected_error)
