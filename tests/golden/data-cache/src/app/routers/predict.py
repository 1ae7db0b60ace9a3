"""Predictions for a data item named by ID: scores or label, or those of the sample item."""

from __future__ import annotations

from fastapi import APIRouter, Response

from src.app.config import SAMPLE_DATA_ID, Settings
from src.app.deps import ClassifierDep, SettingsDep, infer, json_response
from src.app.items import ItemLoader, LoaderDep
from src.app.limits import BUSY_DESCRIPTION
from src.app.schemas import ErrorResponse, LabelsResponse, PredictRequest, ScoresResponse
from src.ml.classifier import Classifier

router = APIRouter(prefix="/predict", tags=["predict"])

REFUSALS: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorResponse, "description": "No item with this ID in the data store"},
    413: {"model": ErrorResponse, "description": "The body is too large"},
    415: {"model": ErrorResponse, "description": "The body is not declared as UTF-8 JSON"},
    422: {"model": ErrorResponse, "description": "A malformed ID, or an item that is no image"},
    503: {
        "model": ErrorResponse,
        "description": f"The data store cannot be read right now. Or: {BUSY_DESCRIPTION}",
    },
}
SAMPLE_REFUSALS = {code: REFUSALS[code] for code in (404, 422, 503)}


async def _scores(
    data_id: str, loader: ItemLoader, model: Classifier, settings: Settings
) -> Response:
    item = await loader.load(data_id)
    scores = await infer(settings, model.predict, item.rows)
    return json_response({"data_id": item.data_id, "cache": item.cache, "prediction": scores})


async def _labels(
    data_id: str, loader: ItemLoader, model: Classifier, settings: Settings
) -> Response:
    item = await loader.load(data_id)
    labels = await infer(settings, model.predict_labels, item.rows)
    return json_response({"data_id": item.data_id, "cache": item.cache, "prediction": labels})


@router.post("", response_model=ScoresResponse, responses=REFUSALS, summary="Class scores")
async def predict(
    payload: PredictRequest, loader: LoaderDep, model: ClassifierDep, settings: SettingsDep
) -> Response:
    """The class scores (in ``/label`` order) of the item, and whether the cache had it."""
    return await _scores(payload.data, loader, model, settings)


@router.post("/label", response_model=LabelsResponse, responses=REFUSALS, summary="Label")
async def predict_label(
    payload: PredictRequest, loader: LoaderDep, model: ClassifierDep, settings: SettingsDep
) -> Response:
    """The most likely label of the item, and whether the cache had it."""
    return await _labels(payload.data, loader, model, settings)


@router.get(
    "/test",
    response_model=ScoresResponse,
    responses=SAMPLE_REFUSALS,
    summary="Class scores of the sample item",
)
async def predict_test(loader: LoaderDep, model: ClassifierDep, settings: SettingsDep) -> Response:
    """The sample item from the variables, end to end (through the cache)."""
    return await _scores(SAMPLE_DATA_ID, loader, model, settings)


@router.get(
    "/test/label",
    response_model=LabelsResponse,
    responses=SAMPLE_REFUSALS,
    summary="Label of the sample item",
)
async def predict_test_label(
    loader: LoaderDep, model: ClassifierDep, settings: SettingsDep
) -> Response:
    """The sample item from the variables, end to end, as a label."""
    return await _labels(SAMPLE_DATA_ID, loader, model, settings)
