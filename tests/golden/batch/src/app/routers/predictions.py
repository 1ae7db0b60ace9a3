"""GET /predictions/{id}: the prediction the batch job published for a row of the data set."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from src.app.deps import json_response
from src.app.predictions import DatabaseUnavailableError, PredictionStore
from src.app.schemas import ErrorResponse

router = APIRouter(tags=["predictions"])
RowId = Annotated[str, Path(min_length=1, max_length=256, description="The row's id")]
RunDate = Annotated[
    dt.date | None, Query(description="The run date (YYYY-MM-DD); default: the latest run")
]


@router.get(
    "/predictions/{row_id}",
    summary="The published prediction for one row of the data set",
    responses={
        404: {"model": ErrorResponse, "description": "No run has published this row"},
        503: {"model": ErrorResponse, "description": "PostgreSQL is unavailable; retry"},
    },
)
async def prediction(request: Request, row_id: RowId, date: RunDate = None) -> Response:
    """The row's label, its score and every class's score, with the run and model that made it."""
    store: PredictionStore = request.app.state.predictions
    try:
        found = await store.find(row_id, date)
    except DatabaseUnavailableError as err:
        busy = json_response({"detail": f"predictions unavailable: {err}"}, status_code=503)
        busy.headers["Retry-After"] = "5"
        return busy
    if found is None:
        where = f" for {date.isoformat()}" if date else ""
        return json_response({"detail": f"no prediction for {row_id!r}{where}"}, status_code=404)
    return json_response(_jsonable(found))


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value.isoformat() if isinstance(value, dt.date | dt.datetime) else value
        for key, value in row.items()
    }
