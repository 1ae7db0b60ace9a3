"""The Open Inference Protocol (KServe V2) over REST: what a request may hold, and the answers.

The service serves one model: its name is the service's name, its one version the image tag, its
platform ``onnxruntime_onnx``. An inference request is checked as strictly as ``POST /predict``:
every input of the model once, named, typed and shaped as the model's, with the same number of
rows, every value one the datatype can hold (finite numbers, ``true``/``false`` for BOOL, strings
for BYTES), at most MAX_ROWS rows; anything else is refused with ``{"error": "..."}`` and a 4xx.

Tensor data is read from JSON (flat in row-major order, or nested as the shape) or from the binary
tensor data extension: the body's first ``Inference-Header-Content-Length`` bytes are the JSON
request, the rest each input's raw little-endian values in order (``binary_data_size`` bytes each;
BYTES elements prefixed with their 4-byte length). Outputs are answered the same way when asked
(``binary_data`` on an output, or ``binary_data_output`` on the request); a classifier's ZipMap
output is answered as the FP32 scores it holds, one column per label.
"""

from __future__ import annotations

import functools
import math
import struct
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from src.app import config
from src.ml.classifier import Classifier, jsonable

PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ["binary_tensor_data"]
# numpy dtype name → the protocol's datatype name, for every dtype the model may take or give.
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
    "bool": "BOOL",
    "string": "BYTES",
}
NUMPY = {datatype: name for name, datatype in DATATYPES.items()}
HEADER_LENGTH = "inference-header-content-length"


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
    data: list[Any] | None = Field(
        None,
        description="The values, flat in row-major order or nested as shape; left out when "
        "they are sent as binary data (parameters.binary_data_size).",
    )


class RequestOutput(BaseModel):
    """An output the client asks for."""

    model_config = ConfigDict(extra="forbid")

    name: StrictStr
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    """An inference request: the model's inputs, optionally the outputs wanted."""

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

    data: list[Any] | None = None
    parameters: dict[str, Any] | None = None


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
    """The server's name, version and protocol extensions."""

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
    inputs: tuple[TensorMetadata, ...]
    outputs: tuple[TensorMetadata, ...]

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
            "inputs": [tensor.model_dump() for tensor in self.inputs],
            "outputs": [tensor.model_dump() for tensor in self.outputs],
        }


def _tensor(spec: dict[str, Any], classes: int) -> TensorMetadata:
    if spec["dtype"].startswith("seq(map("):
        # A ZipMap: answered as the scores it holds, one column per class.
        return TensorMetadata(name=spec["name"], datatype="FP32", shape=[-1, classes])
    shape = [-1 if dim is None else dim for dim in spec["shape"]]
    return TensorMetadata(name=spec["name"], datatype=DATATYPES[spec["dtype"]], shape=shape)


@functools.lru_cache(maxsize=8)
def describe(classifier: Classifier) -> ModelSpec:
    """The protocol's view of ``classifier`` (worked out once per loaded model)."""
    info = classifier.metadata()
    classes = len(info["labels"])
    return ModelSpec(
        name=config.SERVICE_NAME,
        version=config.SERVICE_VERSION,
        inputs=tuple(_tensor(spec, classes) for spec in info["inputs"]),
        outputs=tuple(_tensor(spec, classes) for spec in info["outputs"]),
    )


def server_metadata() -> dict[str, Any]:
    """The server metadata answer."""
    return {
        "name": config.SERVICE_NAME,
        "version": config.SERVICE_VERSION,
        "extensions": EXTENSIONS,
    }


def decode(
    body: bytes, header_length: str | None, model: ModelSpec, max_rows: int
) -> tuple[InferenceRequest, dict[str, np.ndarray]]:
    """The request in ``body`` and the model's inputs as arrays; ProtocolError if refused."""
    text, binary = _split(body, header_length)
    request = _parse(text)
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for tensor in request.inputs:
        check_input(model, tensor.name, tensor.datatype, tensor.shape, arrays, max_rows)
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is None:
            if tensor.data is None:
                raise ProtocolError(
                    400, f"inputs: {tensor.name!r} has neither data nor binary data"
                )
            arrays[tensor.name] = from_values(tensor.data, tensor.datatype, tensor.shape)
            continue
        chunk = _binary_chunk(binary, offset, size, tensor.name)
        offset += len(chunk)
        arrays[tensor.name] = from_binary(chunk, tensor.datatype, tensor.shape)
    if offset != len(binary):
        raise ProtocolError(400, f"binary data: {len(binary) - offset} bytes no input declares")
    check_complete(model, arrays)
    check_outputs([output.name for output in request.outputs or []], model)
    return request, arrays


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise ProtocolError(
            400, f"Inference-Header-Content-Length: {header_length!r} is not a length in the body"
        )
    return body[: int(header_length)], body[int(header_length) :]


def _parse(text: bytes) -> InferenceRequest:
    try:
        return InferenceRequest.model_validate_json(text)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
            for error in err.errors(include_url=False, include_input=False)
        )
        raise ProtocolError(400, problems) from None


def check_input(
    model: ModelSpec,
    name: str,
    datatype: str,
    shape: list[int],
    seen: dict[str, np.ndarray],
    max_rows: int,
) -> None:
    """ProtocolError unless the tensor ``name`` is an input of the model not ``seen`` yet, of its
    datatype and of a shape it takes, with at most ``max_rows`` rows."""
    names = ", ".join(repr(spec.name) for spec in model.inputs)
    expected = next((spec for spec in model.inputs if spec.name == name), None)
    if expected is None:
        raise ProtocolError(400, f"inputs: unknown input {name!r}; the model takes {names}")
    if name in seen:
        raise ProtocolError(400, f"inputs: {name!r} is given twice")
    if datatype != expected.datatype:
        raise ProtocolError(400, f"inputs: datatype {datatype!r}; {name!r} is {expected.datatype}")
    _check_shape(name, shape, expected.shape, max_rows)


def check_complete(model: ModelSpec, arrays: dict[str, np.ndarray]) -> None:
    missing = [spec.name for spec in model.inputs if spec.name not in arrays]
    if missing:
        raise ProtocolError(400, f"inputs: missing {', '.join(map(repr, missing))}")
    rows = {len(array) for array in arrays.values()}
    if len(rows) > 1:
        raise ProtocolError(400, "inputs: every input must have the same number of rows")


def _check_shape(name: str, shape: list[int], expected: list[int], max_rows: int) -> None:
    """400 unless ``shape`` fits ``expected`` with at least one row; 413 beyond ``max_rows``."""
    fits = len(shape) == len(expected) and all(
        want in (-1, got) for got, want in zip(shape, expected, strict=True)
    )
    if not fits or min(shape, default=1) < 1:
        raise ProtocolError(
            400,
            f"inputs: {name!r} has shape {shape}; the model takes {expected} "
            "(-1: any size, at least 1)",
        )
    if shape[0] > max_rows:
        raise ProtocolError(
            413, f"inputs: {name!r} has {shape[0]} rows; at most {max_rows} per request"
        )


def check_outputs(names: list[str], model: ModelSpec) -> None:
    """ProtocolError unless every output asked for is one of the model's."""
    served = {tensor.name for tensor in model.outputs}
    for name in names:
        if name not in served:
            raise ProtocolError(
                400,
                f"outputs: unknown output {name!r}; the model answers "
                f"{', '.join(sorted(map(repr, served)))}",
            )


def from_values(data: list[Any], datatype: str, shape: list[int]) -> np.ndarray:
    """An input sent as values (flat or nested as ``shape``); ProtocolError if they do not fit."""
    return _to_array(_flatten(data, shape), datatype).reshape(shape)


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
        # The leaves are checked by _to_array: a list there is not a value.
        flat.extend(value)
        return
    for item in value:
        _collect(item, shape[1:], flat)


def _to_array(values: list[Any], datatype: str) -> np.ndarray:
    """The values as the model's dtype; 400 for anything the datatype cannot hold."""
    kinds = set(map(type, values))
    if datatype in ("BYTES", "BOOL"):
        allowed = str if datatype == "BYTES" else bool
        if kinds - {allowed}:
            raise ProtocolError(400, f"inputs: {datatype} data holds values of other types")
        return np.asarray(values, dtype=object if datatype == "BYTES" else np.bool_)
    dtype = np.dtype(NUMPY[datatype])
    allowed_numbers = {int, float} if dtype.kind == "f" else {int}
    if not kinds <= allowed_numbers:
        names = ", ".join(sorted(kind.__name__ for kind in kinds - allowed_numbers))
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
    return _finite(wide, datatype).astype(dtype)


def _finite(array: np.ndarray, datatype: str) -> np.ndarray:
    if not np.isfinite(array).all():
        raise ProtocolError(400, "inputs: NaN and infinities are not accepted")
    if array.size and np.abs(array).max() > np.finfo(NUMPY[datatype]).max:
        raise ProtocolError(400, f"inputs: a value is outside the range of {datatype}")
    return array


def _binary_chunk(binary: bytes, offset: int, size: Any, name: str) -> bytes:
    if type(size) is not int or size < 0 or offset + size > len(binary):
        raise ProtocolError(
            400, f"inputs: {name!r}: binary_data_size {size!r} does not fit the binary data sent"
        )
    return binary[offset : offset + size]


def from_binary(chunk: bytes, datatype: str, shape: list[int]) -> np.ndarray:
    """An input sent as raw little-endian values (BYTES: each with its 4-byte length)."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return np.asarray(_strings(chunk, count), dtype=object).reshape(shape)
    dtype = np.dtype(NUMPY[datatype]).newbyteorder("<")
    if len(chunk) != count * dtype.itemsize:
        raise ProtocolError(
            400,
            f"inputs: {len(chunk)} bytes of {datatype}; shape {shape} needs "
            f"{count * dtype.itemsize}",
        )
    array = np.frombuffer(chunk, dtype=dtype).reshape(shape)
    if datatype == "BOOL":
        if not np.isin(np.frombuffer(chunk, dtype=np.uint8), (0, 1)).all():
            raise ProtocolError(400, "inputs: BOOL data holds bytes other than 0 and 1")
    elif dtype.kind == "f":
        _finite(array.astype(np.float64), datatype)
    return array.astype(dtype.newbyteorder("="))


def _strings(chunk: bytes, count: int) -> list[str]:
    values: list[str] = []
    offset = 0
    while offset < len(chunk):
        if offset + 4 > len(chunk):
            raise ProtocolError(400, "inputs: BYTES data ends inside a length prefix")
        (length,) = struct.unpack_from("<I", chunk, offset)
        element = chunk[offset + 4 : offset + 4 + length]
        if len(element) != length:
            raise ProtocolError(400, "inputs: BYTES data ends inside an element")
        try:
            values.append(element.decode("utf-8"))
        except UnicodeDecodeError:
            raise ProtocolError(400, "inputs: BYTES elements must be UTF-8 text") from None
        offset += 4 + length
    if len(values) != count:
        raise ProtocolError(400, f"inputs: {len(values)} BYTES elements; the shape has {count}")
    return values


def wanted_outputs(request: InferenceRequest, model: ModelSpec) -> list[str]:
    """The outputs asked for, in the order asked; every output of the model when none is."""
    if request.outputs:
        return [output.name for output in request.outputs]
    return [tensor.name for tensor in model.outputs]


def _binary_wanted(request: InferenceRequest, name: str) -> bool:
    for output in request.outputs or []:
        if output.name == name and output.parameters and "binary_data" in output.parameters:
            return bool(output.parameters["binary_data"])
    return bool((request.parameters or {}).get("binary_data_output", False))


def answer(
    request: InferenceRequest, model: ModelSpec, names: list[str], results: list[Any]
) -> tuple[dict[str, Any], bytes]:
    """The inference answer's JSON and its binary part (empty when every output is JSON)."""
    outputs = []
    binary = bytearray()
    for name, result in zip(names, results, strict=True):
        array, datatype = output_tensor(result)
        output: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if _binary_wanted(request, name):
            raw = to_binary(array, datatype)
            output["parameters"] = {"binary_data_size": len(raw)}
            binary += raw
        else:
            output["data"] = array.reshape(-1).tolist() if datatype == "BYTES" else array.ravel()
        outputs.append(output)
    body: dict[str, Any] = {
        "model_name": model.name,
        "model_version": model.version,
        "outputs": outputs,
    }
    if request.id is not None:
        body["id"] = request.id
    return body, bytes(binary)


def output_tensor(result: Any) -> tuple[np.ndarray, str]:
    """A model output as an array and its datatype (a ZipMap's maps as FP32 scores)."""
    array = result if isinstance(result, np.ndarray) else np.asarray(jsonable(result))
    return array, "BYTES" if array.dtype == np.object_ else DATATYPES[array.dtype.name]


def to_binary(array: np.ndarray, datatype: str) -> bytes:
    """An output's values as the binary tensor data extension sends them."""
    if datatype != "BYTES":
        return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    parts = []
    for value in array.reshape(-1):
        encoded = str(value).encode("utf-8")
        parts.append(struct.pack("<I", len(encoded)) + encoded)
    return b"".join(parts)
