"""Response bodies of the queued side: what POST /predict, GET /job and GET /ready answer."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PredictJobResponse(BaseModel):
    """The fast model's scores now, and the job that will hold the slow model's."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job_id": "5f0c6a3e9b1d4c7f8e2a1b3c4d5e6f70",
                    "prediction": [[0.977, 0.014, 0.008]],
                    "queued": True,
                    "detail": None,
                },
                {
                    "job_id": None,
                    "prediction": [[0.977, 0.014, 0.008]],
                    "queued": False,
                    "detail": "the job queue is unavailable; the slow prediction was not queued",
                },
            ]
        }
    )

    job_id: str | None = Field(
        description="Poll GET /job/{job_id} for the slow model's answer; null when not queued."
    )
    prediction: list[list[float]] = Field(
        description="The fast model's class scores, one list per row, in /label order."
    )
    queued: bool = Field(description="Whether the slow prediction was queued.")
    detail: str | None = Field(
        None, description="Why the slow prediction was not queued (queue unavailable or full)."
    )


class JobResponse(BaseModel):
    """A job of the slow model: where it is, and its answer once done."""

    job_id: str
    status: Literal["queued", "running", "done", "failed"]
    attempts: int = Field(
        description="How many times a worker started it (more than 1 after a crash)."
    )
    created: float | None = Field(description="When it was queued (Unix time, seconds).")
    started: float | None = Field(description="When a worker last started it.")
    finished: float | None = Field(description="When it ended (done or failed).")
    prediction: list[list[float]] | None = Field(
        description="The slow model's class scores, one list per row; set once done."
    )
    labels: list[str] | None = Field(
        description="The slow model's label of each row; set once done."
    )
    error: str | None = Field(description="Why it failed; set once failed.")


class ReadyResponse(BaseModel):
    """Readiness of the proxy, and the state of the job queue it depends on."""

    ready: bool
    queue: Literal["ok", "unavailable"] = Field(
        description="Whether Redis answers; the proxy stays ready without it (fast answers only)."
    )
    detail: str | None = None
