"""How refused requests look: the offending field and why, never the payload echoed back."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError

from src.app.deps import json_response

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


async def unexpected_error(request: Request, exc: Exception) -> Response:
    """Log what broke; answer 500 without internals."""
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return json_response({"detail": "internal error"}, status_code=500)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected_error)
