"""Predictions: the fast model answers at once; POST /predict also queues the slow model's job.

Only ``POST /predict`` queues a job. The label and sample endpoints answer from the fast model
alone, so probes and smoke tests that call them never fill the queue. ``src.app.fast`` serves the
two POST routes the same way, before FastAPI's routing.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response, status

from src.app.config import DATA_SAMPLE, Settings
from src.app.deps import ClassifierDep, SettingsDep, infer, json_response
from src.app.job_schemas import PredictJobResponse
from src.app.jobs import JobsDep
from src.app.limits import BUSY_DESCRIPTION
from src.app.schemas import ErrorResponse, LabelsResponse, PredictRequest, ScoresResponse
from src.jobs.client import JobClient
from src.ml.classifier import Classifier

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


async def scores_and_job(
    settings: Settings, model: Classifier, jobs: JobClient, rows: list[Any]
) -> dict[str, Any]:
    """The body of ``POST /predict``: the fast model's scores, and the slow model's job."""
    scores = await infer(settings, model.predict, rows)
    submission = await jobs.submit(rows)
    return {
        "job_id": submission.job_id,
        "prediction": scores,
        "queued": submission.job_id is not None,
        "detail": submission.detail,
    }


@router.post(
    "",
    response_model=PredictJobResponse,
    responses=REFUSALS,
    summary="Fast class scores now; the slow model's as a job",
)
async def predict(
    payload: PredictRequest, model: ClassifierDep, settings: SettingsDep, jobs: JobsDep
) -> Response:
    """The fast model's scores for every row, and the ID of the job computing the slow model's.

    When the queue is unavailable or full the fast scores are still returned (200), with
    ``job_id`` null, ``queued`` false and ``detail`` saying why.
    """
    return json_response(await scores_and_job(settings, model, jobs, _rows(payload, settings)))


@router.post("/label", response_model=LabelsResponse, responses=REFUSALS, summary="Fast labels")
async def predict_label(
    payload: PredictRequest, model: ClassifierDep, settings: SettingsDep
) -> Response:
    """The fast model's most likely label of every row sent (no job is queued)."""
    labels = await infer(settings, model.predict_labels, _rows(payload, settings))
    return json_response({"prediction": labels})


@router.get("/test", response_model=ScoresResponse, summary="Fast scores of the sample rows")
async def predict_test(model: ClassifierDep, settings: SettingsDep) -> Response:
    """The sample from the variables, end to end through the fast model."""
    return json_response({"prediction": await infer(settings, model.predict, DATA_SAMPLE)})


@router.get("/test/label", response_model=LabelsResponse, summary="Fast labels of the sample rows")
async def predict_test_label(model: ClassifierDep, settings: SettingsDep) -> Response:
    """The sample from the variables, end to end through the fast model, as labels."""
    return json_response({"prediction": await infer(settings, model.predict_labels, DATA_SAMPLE)})
