"""The slow model's answers: a job's status, and its prediction once done."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from src.app.deps import json_response
from src.app.job_schemas import JobResponse
from src.app.jobs import JobsDep
from src.app.schemas import ErrorResponse
from src.jobs.client import QueueUnavailableError
from src.jobs.store import is_job_id

router = APIRouter(prefix="/job", tags=["jobs"])

UNKNOWN = "no such job: unknown, or its record expired"


@router.get(
    "/{job_id}",
    response_model=JobResponse,
    responses={
        404: {"model": ErrorResponse, "description": "Unknown job, or its record expired"},
        503: {"model": ErrorResponse, "description": "The job queue is unavailable"},
    },
    summary="A job's status and, once done, the slow model's prediction",
)
async def job(job_id: str, jobs: JobsDep) -> Response:
    """``queued``, ``running``, ``done`` (with ``prediction`` and ``labels``) or ``failed``."""
    if not is_job_id(job_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, UNKNOWN)
    try:
        record = await jobs.fetch(job_id)
    except QueueUnavailableError as err:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"{err}; try again later", {"Retry-After": "1"}
        ) from err
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, UNKNOWN)
    return json_response(record.as_dict())
