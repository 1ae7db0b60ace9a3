"""Request and response bodies.

A request names one item of the data store by its ID, a plain file name; anything that could point
elsewhere (a path separator, "..", an absolute path, a URL scheme) is refused with 422.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from src.app.config import SAMPLE_DATA_ID
from src.app.items import CacheOutcome
from src.data.guard import CacheHealth
from src.data.store import MAX_ID_LENGTH, validate_data_id

# What validate_data_id accepts, as a JSON Schema pattern: a letter or digit first, then letters,
# digits, ".", "_" and "-" with no ".." anywhere. Only in the schema, so that clients (and API
# fuzzers) know what is valid; the validator keeps its own messages saying what is wrong.
DATA_ID_PATTERN = r"^[A-Za-z0-9](?:\.?[A-Za-z0-9_-])*\.?$"
DataId = Annotated[
    str,
    Field(
        strict=True,
        min_length=1,
        max_length=MAX_ID_LENGTH,
        json_schema_extra={"pattern": DATA_ID_PATTERN},
    ),
    AfterValidator(validate_data_id),
]
CACHE_DESCRIPTION = (
    "hit: from the cache; miss: loaded and preprocessed, now being cached; "
    "bypass: the cache is unavailable, served uncached"
)


class PredictRequest(BaseModel):
    """The data item to predict."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"data": SAMPLE_DATA_ID}]}
    )

    data: DataId = Field(description="The ID of an item of the data store (a plain file name).")


class ScoresResponse(BaseModel):
    """The class scores of the item, in label order, as one row."""

    data_id: str
    cache: CacheOutcome = Field(description=CACHE_DESCRIPTION)
    prediction: list[list[float]]


class LabelsResponse(BaseModel):
    """The most likely label of the item."""

    data_id: str
    cache: CacheOutcome = Field(description=CACHE_DESCRIPTION)
    prediction: list[str]


class ReadyResponse(BaseModel):
    """Ready to serve; ``cache`` is ``degraded`` while Redis is unavailable (then uncached)."""

    ready: Literal[True]
    cache: CacheHealth


class ErrorResponse(BaseModel):
    """Why a request was refused."""

    detail: str | list[dict[str, object]]


class PreprocessingInfo(BaseModel):
    """How stored items become model input."""

    version: int
    image_side: int
    tensor_shape: list[int]
    dtype: str


class CacheInfo(BaseModel):
    """Where and for how long preprocessed items are cached."""

    key_prefix: str
    ttl_seconds: int
    health: CacheHealth


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
    sample_data_id: str
    preprocessing: PreprocessingInfo
    cache: CacheInfo
