"""Request and response bodies, checked against the model's real inputs.

Every value must be of its input's dtype (float32): a number a finite JSON number the
dtype can hold, a string a JSON string, a boolean true or false; anything else, NaN and infinities
are refused before any inference runs.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from src.app.config import DATA_SAMPLE

_FLOAT32 = float(np.finfo(np.float32).max)
# Strict: a string or a boolean is not a number; the bounds refuse values float32 cannot hold.
Float32 = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-_FLOAT32, le=_FLOAT32)]

Row = Annotated[list[Float32], Field(min_length=256, max_length=256)]


class PredictRequest(BaseModel):
    """Rows to predict for; each row has shape [256]."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"data": DATA_SAMPLE}]}
    )

    data: list[Row] = Field(min_length=1, description="Input rows, [256] each.")


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
    task: str
    inputs: list[dict[str, object]]
    outputs: list[dict[str, object]]
    labels: list[str]
    producer: str
    onnxruntime_version: str
    # How the last `make reload` ended (outcome swapped or refused, when, and why); null if none.
    last_swap: dict[str, object] | None
    data_sample: list[object]
    max_rows: int
