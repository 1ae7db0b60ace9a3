"""The Open Inference Protocol (KServe V2) over REST: what a request may hold, and the answers.

The service serves one model: its name is the service's name, its one version the image tag, its
platform ``onnxruntime_onnx``. An inference request is checked as strictly as ``POST /predict``:
one input tensor named, typed and shaped as the model's input, every value a finite number the
datatype can hold, at most MAX_ROWS rows; anything else is refused with ``{"error": "..."}`` and
a 4xx. Tensor data is read from JSON (flat in row-major order, or nested as the shape); the
binary tensor data extension is not supported, and answers always carry JSON data.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from src.app import config
from src.ml.classifier import Classifier

PLATFORM = "onnxruntime_onnx"
# numpy dtype name → the protocol's datatype name, for every dtype the classifier accepts.
DATATYPES = {
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
}
BINARY = (
    "binary tensor data is not supported: send the tensor's values in JSON "
    "(tritonclient: set_data_from_numpy(..., binary_data=False))"
)


class ProtocolError(Exception):
    """A request the protocol refuses: answered ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class RequestInput(BaseModel):
    """One input tensor of an inference request."""

    model_config = ConfigDict(extra="forbid")

    name: StrictStr
    shape: list[Annotated[StrictInt, Field(ge=0)]]
    datatype: StrictStr
    parameters: dict[str, Any] | None = None
    data: list[Any] = Field(description="The values, flat in row-major order or nested as shape.")


class RequestOutput(BaseModel):
    """An output the client asks for."""

    model_config = ConfigDict(extra="forbid")

    name: StrictStr
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    """An inference request: one input tensor, optionally the outputs wanted."""

    model_config = ConfigDict(extra="forbid")

    id: StrictStr | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class TensorMetadata(BaseModel):
    """Name, datatype and shape of a model tensor; -1 is a dimension of any size."""

    name: str
    datatype: str
    shape: list[int]


class ResponseOutput(TensorMetadata):
    """An output tensor of an answer, its values flat in row-major order."""

    data: list[float]


class InferenceResponse(BaseModel):
    """The answer to an inference request."""

    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[ResponseOutput]


class ModelMetadata(BaseModel):
    """What the model takes and gives."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    """The server's name, version and protocol extensions (none)."""

    name: str
    version: str
    extensions: list[str]


class ErrorResponse(BaseModel):
    """Why a request was refused."""

    error: str


@dataclass(frozen=True)
class ModelSpec:
    """The served model as the protocol describes it."""

    name: str
    version: str
    input: TensorMetadata
    output: TensorMetadata

    def check(self, name: str, version: str | None) -> None:
        """ProtocolError 404 unless ``name`` (and ``version``, if given) is this model's."""
        if name != self.name:
            raise ProtocolError(404, f"unknown model {name!r}; this server serves {self.name!r}")
        if version is not None and version != self.version:
            raise ProtocolError(
                404, f"unknown version {version!r} of {name!r}; it has {self.version!r}"
            )

    def metadata(self) -> dict[str, Any]:
        """The model metadata answer."""
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": PLATFORM,
            "inputs": [self.input.model_dump()],
            "outputs": [self.output.model_dump()],
        }


def _tensor(spec: dict[str, Any]) -> TensorMetadata:
    shape = [-1 if dim is None else dim for dim in spec["shape"]]
    return TensorMetadata(name=spec["name"], datatype=DATATYPES[spec["dtype"]], shape=shape)


@functools.lru_cache(maxsize=8)
def describe(classifier: Classifier) -> ModelSpec:
    """The protocol's view of ``classifier`` (worked out once per loaded model)."""
    info = classifier.metadata()
    return ModelSpec(
        name=config.SERVICE_NAME,
        version=config.SERVICE_VERSION,
        input=_tensor(info["inputs"][0]),
        output=_tensor(info["outputs"][0]),
    )


def server_metadata() -> dict[str, Any]:
    """The server metadata answer."""
    return {"name": config.SERVICE_NAME, "version": config.SERVICE_VERSION, "extensions": []}


def decode(body: bytes, model: ModelSpec, max_rows: int) -> tuple[InferenceRequest, np.ndarray]:
    """The request in ``body`` and its input as an array the model takes; ProtocolError if not."""
    try:
        request = InferenceRequest.model_validate_json(body)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
            for error in err.errors(include_url=False, include_input=False)
        )
        raise ProtocolError(400, problems) from None
    if len(request.inputs) != 1:
        raise ProtocolError(
            400, f"inputs: expected one input ({model.input.name!r}), got {len(request.inputs)}"
        )
    tensor = request.inputs[0]
    if tensor.parameters and "binary_data_size" in tensor.parameters:
        raise ProtocolError(400, BINARY)
    if tensor.name != model.input.name:
        raise ProtocolError(
            400, f"inputs: unknown input {tensor.name!r}; the model takes {model.input.name!r}"
        )
    if tensor.datatype != model.input.datatype:
        raise ProtocolError(
            400,
            f"inputs: datatype {tensor.datatype!r}; {model.input.name!r} is {model.input.datatype}",
        )
    _check_shape(tensor.shape, model.input.shape, max_rows)
    _check_outputs(request.outputs, model.output.name)
    values = _flatten(tensor.data, tensor.shape)
    return request, _to_array(values, model.input.datatype).reshape(tensor.shape)


def _check_shape(shape: list[int], expected: list[int], max_rows: int) -> None:
    """400 unless ``shape`` fits ``expected`` with at least one row; 413 beyond ``max_rows``."""
    fits = len(shape) == len(expected) and all(
        want in (-1, got) for got, want in zip(shape, expected, strict=True)
    )
    if not fits or 0 in shape:
        raise ProtocolError(
            400, f"inputs: shape {shape}; the model takes {expected} (-1: any size, at least 1)"
        )
    if shape[0] > max_rows:
        raise ProtocolError(413, f"inputs: {shape[0]} rows; at most {max_rows} per request")


def _check_outputs(outputs: list[RequestOutput] | None, served: str) -> None:
    for output in outputs or []:
        if output.name != served:
            raise ProtocolError(
                400, f"outputs: unknown output {output.name!r}; the model answers {served!r}"
            )


def _flatten(data: list[Any], shape: list[int]) -> list[Any]:
    """The values of ``data`` in row-major order: flat as sent, or nested exactly as ``shape``."""
    count = math.prod(shape)
    if not data or type(data[0]) is not list:
        if len(data) != count:
            raise ProtocolError(400, f"inputs: {len(data)} values; shape {shape} has {count}")
        return data
    flat: list[Any] = []
    _collect(data, shape, flat)
    return flat


def _collect(value: Any, shape: list[int], flat: list[Any]) -> None:
    if type(value) is not list or len(value) != shape[0]:
        raise ProtocolError(400, "inputs: nested data must have exactly the tensor's shape")
    if len(shape) == 1:
        # The leaves are checked by _to_array: a list there is not a number.
        flat.extend(value)
        return
    for item in value:
        _collect(item, shape[1:], flat)


def _to_array(values: list[Any], datatype: str) -> np.ndarray:
    """The values as the model's dtype; 400 for anything that is not a number it can hold."""
    dtype = np.dtype(next(name for name, v2 in DATATYPES.items() if v2 == datatype))
    kinds = set(map(type, values))
    allowed = {int, float} if dtype.kind == "f" else {int}
    if not kinds <= allowed:
        names = ", ".join(sorted(kind.__name__ for kind in kinds - allowed))
        raise ProtocolError(400, f"inputs: {datatype} data holds {names}, not only numbers")
    if dtype.kind != "f":
        limits = np.iinfo(dtype)
        if min(values) < limits.min or max(values) > limits.max:
            raise ProtocolError(400, f"inputs: a value is outside the range of {datatype}")
        return np.asarray(values, dtype=dtype)
    try:
        wide = np.asarray(values, dtype=np.float64)
    except OverflowError:
        raise ProtocolError(400, f"inputs: a value is outside the range of {datatype}") from None
    if not np.isfinite(wide).all():
        raise ProtocolError(400, "inputs: NaN and infinities are not accepted")
    if np.abs(wide).max() > np.finfo(dtype).max:
        raise ProtocolError(400, f"inputs: a value is outside the range of {datatype}")
    return wide.astype(dtype)


def answer(request: InferenceRequest, model: ModelSpec, scores: np.ndarray) -> dict[str, Any]:
    """The inference answer: the model's scores as one output tensor."""
    output = {
        "name": model.output.name,
        "datatype": DATATYPES[scores.dtype.name],
        "shape": list(scores.shape),
        "data": scores.reshape(-1),
    }
    body: dict[str, Any] = {
        "model_name": model.name,
        "model_version": model.version,
        "outputs": [output],
    }
    if request.id is not None:
        body["id"] = request.id
    return body
