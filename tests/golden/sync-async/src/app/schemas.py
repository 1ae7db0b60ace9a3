"""Request and response bodies, checked against the model's real input.

Every number must be a finite JSON number that fits the model's input dtype (float32);
strings, booleans, NaN and infinities are refused before any inference runs.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from src.app.config import DATA_SAMPLE

_LIMIT = float(np.finfo(np.float32).max)
# Strict: a string or a boolean is not a number; the bounds refuse values the dtype cannot hold.
Number = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-_LIMIT, le=_LIMIT)]

Row = Annotated[list[Number], Field(min_length=4, max_length=4)]


class PredictRequest(BaseModel):
    """Rows to score; each row has shape [4]."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"data": DATA_SAMPLE}]}
    )

    data: list[Row] = Field(min_length=1, description="Input rows, [4] each.")


class ScoresResponse(BaseModel):
    """One list of class scores per input row, in label order."""

    prediction: list[list[float]]


class LabelsResponse(BaseModel):
    """The most likely label of every input row."""

    prediction: list[str]


class ErrorResponse(BaseModel):
    """Why a request was refused."""

    detail: str | list[dict[str, object]]


class MetadataResponse(BaseModel):
    """Which model this service runs, and how to call it."""

    name: str
    version: str
    pattern: str
    builder_version: str
    model_file: str
    model_sha256: str
    inputs: list[dict[str, object]]
    outputs: list[dict[str, object]]
    labels: list[str]
    producer: str
    onnxruntime_version: str
    data_sample: list[object]
    max_rows: int
