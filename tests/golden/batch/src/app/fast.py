"""The hot path: POST /predict and /predict/label answered before FastAPI's routing.

FastAPI still declares both routes (``routers/predict.py``): ``/docs`` and ``/openapi.json``
describe them, and ``FAST_PATH=false`` serves them the ordinary way. This middleware answers the
same requests with the same validation, limits and answers, without the framework's per-request
routing, dependency solving and response building, which cost more than the inference itself for a
small model (bench/README.md in the builder repository has the numbers). It runs inside
``src.app.observe`` (request ID, metrics, request log), which sees its answers like any other, and
inside any middleware added to the app afterwards (authentication, say).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from src.app import config
from src.app.deps import infer, json_body
from src.app.errors import error_detail, model_refusal
from src.app.limits import (
    NOT_UTF8,
    content_type_problem,
    not_utf8,
    read_or_refuse,
    refuse_content_type,
    surely_too_many_rows,
)
from src.app.observe import mark_route
from src.app.routers.predict import too_many_rows
from src.app.schemas import PredictRequest
from src.ml.classifier import ModelInputError

# What answers a path: given the app's state and the validated rows, the answer's JSON object.
Route = Callable[[Any, list[Any]], Awaitable[dict[str, Any]]]
JSON = [(b"content-type", b"application/json")]


async def _predict(state: Any, rows: list[Any]) -> dict[str, Any]:
    return {"prediction": await infer(state.settings, state.classifier.predict, rows)}


async def _labels(state: Any, rows: list[Any]) -> dict[str, Any]:
    return {"prediction": await infer(state.settings, state.classifier.predict_labels, rows)}


# Path → what answers it, as the route of the same path in routers/predict.py does.
ROUTES: dict[str, Route] = {"/predict": _predict, "/predict/label": _labels}


class FastRoutes:
    """Pure ASGI middleware serving :data:`ROUTES`; everything else goes on to FastAPI."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = ROUTES.get(scope["path"]) if scope["type"] == "http" else None
        state = scope["app"].state
        if route is None or scope["method"] != "POST" or not state.ready:
            await self.app(scope, receive, send)
            return
        mark_route(scope, scope["path"])
        problem = content_type_problem(scope)
        if problem is not None:
            await refuse_content_type(send, scope, problem)
            return
        body = await read_or_refuse(
            scope, receive, send, state.settings.max_body_bytes, state.body_budget
        )
        if body is None:
            return
        try:
            status, payload = await answer(state, route, body)
        finally:
            state.body_budget.give_back(len(body))
        await send({"type": "http.response.start", "status": status, "headers": JSON})
        await send({"type": "http.response.body", "body": payload})


async def answer(state: Any, route: Route, body: bytes) -> tuple[int, bytes]:
    """Validate ``body`` as FastAPI would, then let ``route`` answer for its rows."""
    if not_utf8(body):
        return 415, json_body({"detail": NOT_UTF8})
    refusal = surely_too_many_rows(
        body, state.settings.max_rows, config.OPENERS_PER_ROW, config.ROW_OPENER
    )
    if refusal is not None:
        return 413, json_body({"detail": refusal})
    try:
        request = PredictRequest.model_validate_json(body)
    except ValidationError as err:
        return 422, json_body({"detail": error_detail(err.errors(), prefix=("body",))})
    refusal = too_many_rows(len(request.data), state.settings)
    if refusal is not None:
        return 413, json_body({"detail": refusal})
    try:
        return 200, json_body(await route(state, request.data))
    except ModelInputError as err:
        return 422, json_body({"detail": model_refusal(err)})
