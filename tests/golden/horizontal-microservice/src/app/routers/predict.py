"""Predictions: scores or labels for the rows sent, or for the sample rows."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from src.app.config import DATA_SAMPLE, Settings
from src.app.deps import ClassifierDep, SettingsDep, infer, json_response
from src.app.limits import BUSY_DESCRIPTION
from src.app.schemas import ErrorResponse, LabelsResponse, PredictRequest, ScoresResponse

router = APIRouter(prefix="/predict", tags=["predict"])

REFUSALS: dict[int | str, dict[str, object]] = {
    413: {"model": ErrorResponse, "description": "Too many rows, or the body is too large"},
    415: {"model": ErrorResponse, "description": "The body is not declared as UTF-8 JSON"},
    422: {"model": ErrorResponse, "description": "The input does not fit the model"},
    503: {"model": ErrorResponse, "description": BUSY_DESCRIPTION},
}


def too_many_rows(count: int, settings: Settings) -> str | None:
    """Why ``count`` rows are refused, or None when they are within the limit."""
    if count > settings.max_rows:
        return f"data: {count} rows; at most {settings.max_rows} per request"
    return None


def _rows(payload: PredictRequest, settings: Settings) -> list[object]:
    refusal = too_many_rows(len(payload.data), settings)
    if refusal is not None:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, refusal)
    return payload.data


@router.post("", response_model=ScoresResponse, responses=REFUSALS, summary="Class scores")
async def predict(payload: PredictRequest, model: ClassifierDep, settings: SettingsDep) -> Response:
    """One list of class scores (in ``/label`` order) per row sent."""
    scores = await infer(settings, model.predict, _rows(payload, settings))
    return json_response({"prediction": scores})


@router.post("/label", response_model=LabelsResponse, responses=REFUSALS, summary="Labels")
async def predict_label(
    payload: PredictRequest, model: ClassifierDep, settings: SettingsDep
) -> Response:
    """The most likely label of every row sent."""
    labels = await infer(settings, model.predict_labels, _rows(payload, settings))
    return json_response({"prediction": labels})


@router.get("/test", response_model=ScoresResponse, summary="Class scores of the sample rows")
async def predict_test(model: ClassifierDep, settings: SettingsDep) -> Response:
    """The sample from the variables, end to end."""
    return json_response({"prediction": await infer(settings, model.predict, DATA_SAMPLE)})


@router.get("/test/label", response_model=LabelsResponse, summary="Labels of the sample rows")
async def predict_test_label(model: ClassifierDep, settings: SettingsDep) -> Response:
    """The sample from the variables, end to end, as labels."""
    return json_response({"prediction": await infer(settings, model.predict_labels, DATA_SAMPLE)})
