"""Read an ONNX model's signature without depending on ``onnx`` or ``onnxruntime``.

The generator only needs names, dtypes and shapes of the graph inputs and outputs plus a little
metadata, so this module decodes just those fields straight from the protobuf wire format.
Every other field is skipped, which keeps the reader cheap even for multi-gigabyte models.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

__all__ = ["ModelSignature", "OnnxFormatError", "TensorInfo", "read_signature"]


class OnnxFormatError(ValueError):
    """The file is not a readable ONNX model, or its signature cannot be represented."""


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output.

    ``shape`` holds ``None`` for symbolic or unknown dimensions.  A tensor whose rank is not
    recorded in the model at all is reported with an empty shape.

    ``kind`` is "tensor" except for a classifier's ZipMap output, a sequence of maps from class
    label to probability, which reads as "zipmap": one map per row, so ``shape`` is ``(None,)``,
    ``dtype`` names the probabilities' type and ``key_dtype`` the labels' ("int64" or "string").
    """

    name: str
    dtype: str
    shape: tuple[int | None, ...]
    kind: str = "tensor"
    key_dtype: str = ""


@dataclass(frozen=True)
class ModelSignature:
    """What a serving wrapper needs to know about a model."""

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    producer_name: str
    producer_version: str
    ir_version: int
    opset: int
    sha256: str
    # Labels declared by the model's classifier node, in its order; empty if it declares none.
    class_labels: tuple[str, ...] = ()


# TensorProto.DataType numbers mapped to numpy dtype names.
_DTYPES: dict[int, str] = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    8: "string",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
    16: "bfloat16",
}

# Named so that errors about unsupported types tell the user what their model actually uses.
_UNSUPPORTED_DTYPES: dict[int, str] = {
    0: "UNDEFINED",
    14: "COMPLEX64",
    15: "COMPLEX128",
    17: "FLOAT8E4M3FN",
    18: "FLOAT8E4M3FNUZ",
    19: "FLOAT8E5M2",
    20: "FLOAT8E5M2FNUZ",
    21: "UINT4",
    22: "INT4",
    23: "FLOAT4E2M1",
    24: "FLOAT8E8M0",
    25: "UINT2",
    26: "INT2",
}

# TypeProto oneof members other than tensor_type, for naming what a non-tensor value is.
_NON_TENSOR_TYPES: dict[int, str] = {
    4: "a sequence",
    5: "a map",
    7: "an opaque value",
    8: "a sparse tensor",
    9: "an optional",
}

# ZipMap keys: the only two key types the ONNX-ML operator produces.
_ZIPMAP_KEY_DTYPES = frozenset({"int64", "string"})
_FLOAT_DTYPES = frozenset({"float16", "bfloat16", "float32", "float64"})

_DEFAULT_DOMAINS = ("", "ai.onnx")
_ML_DOMAIN = "ai.onnx.ml"
# ONNX-ML operators that carry a classifier's labels as classlabels_* attributes.
_LABELLED_OPS = frozenset({"LinearClassifier", "TreeEnsembleClassifier", "SVMClassifier", "ZipMap"})
_STRING_LABELS = "classlabels_strings"
# Integer labels: TreeEnsembleClassifier and ZipMap name them int64s, Linear and SVM ints.
_INT_LABELS = ("classlabels_int64s", "classlabels_ints")

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_WIRE_NAMES = {_VARINT: "varint", _I64: "64-bit", _LEN: "length-delimited", _I32: "32-bit"}
_MAX_VARINT_BYTES = 10
_UINT64 = 1 << 64
_INT64_SIGN = 1 << 63


class _DecodeError(Exception):
    """Raised below read_signature, which adds the file name before it reaches the caller."""


@dataclass(frozen=True)
class _Field:
    """One decoded field; ``data`` is used by length-delimited fields, ``value`` by the rest."""

    number: int
    wire_type: int
    value: int
    data: memoryview


_Fields = dict[int, list[_Field]]


def _read_varint(buf: memoryview, pos: int, where: str) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; return its value and the position after it."""
    result = 0
    for index in range(_MAX_VARINT_BYTES):
        if pos + index >= len(buf):
            raise _DecodeError(f"truncated varint at byte {pos} of {where}")
        byte = buf[pos + index]
        result |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            # Encoders may emit bits above 64 for negative int32s; protobuf drops them too.
            return result % _UINT64, pos + index + 1
    raise _DecodeError(f"varint longer than {_MAX_VARINT_BYTES} bytes at byte {pos} of {where}")


def _take(buf: memoryview, pos: int, size: int, where: str) -> memoryview:
    """Slice ``size`` bytes at ``pos``, refusing to run past the end of the message."""
    if size > len(buf) - pos:
        raise _DecodeError(
            f"truncated field at byte {pos} of {where}: needs {size} bytes, {len(buf) - pos} left"
        )
    return buf[pos : pos + size]


def _iter_fields(buf: memoryview, where: str) -> Iterator[_Field]:
    """Yield the fields of one serialized message in wire order."""
    empty = memoryview(b"")
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _read_varint(buf, pos, where)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise _DecodeError(f"invalid field number 0 at byte {start} of {where}")
        if wire_type == _VARINT:
            value, pos = _read_varint(buf, pos, where)
            yield _Field(number, wire_type, value, empty)
        elif wire_type in (_I64, _I32):
            size = 8 if wire_type == _I64 else 4
            raw = _take(buf, pos, size, where)
            pos += size
            yield _Field(number, wire_type, int.from_bytes(raw, "little"), empty)
        elif wire_type == _LEN:
            size, pos = _read_varint(buf, pos, where)
            data = _take(buf, pos, size, where)
            pos += size
            yield _Field(number, wire_type, 0, data)
        else:
            # Groups (3, 4) were never used by ONNX; 6 and 7 do not exist.
            raise _DecodeError(f"unsupported wire type {wire_type} at byte {start} of {where}")


def _parse(buf: memoryview, where: str) -> _Fields:
    """Decode a whole message up front so truncation is reported before any field is used."""
    fields: _Fields = {}
    for field in _iter_fields(buf, where):
        fields.setdefault(field.number, []).append(field)
    return fields


def _occurrences(fields: _Fields, number: int, wire_type: int, where: str) -> list[_Field]:
    """Return all occurrences of a known field, checking the encoder used the expected type."""
    found = fields.get(number, [])
    for field in found:
        if field.wire_type != wire_type:
            raise _DecodeError(
                f"field {number} of {where} is {_WIRE_NAMES[field.wire_type]}, "
                f"expected {_WIRE_NAMES[wire_type]}"
            )
    return found


def _get_int(fields: _Fields, number: int, where: str) -> int | None:
    """Return a singular int32/int64 field as a signed value, or None when it is absent."""
    found = _occurrences(fields, number, _VARINT, where)
    if not found:
        return None
    # Protobuf semantics: the last occurrence of a singular scalar wins.
    return _signed(found[-1].value)


def _signed(value: int) -> int:
    """Reinterpret a decoded varint as the two's-complement int64 it encodes."""
    return value - _UINT64 if value >= _INT64_SIGN else value


def _get_str(fields: _Fields, number: int, where: str) -> str:
    """Return a singular string field; absent strings read as "" just as in protobuf."""
    found = _occurrences(fields, number, _LEN, where)
    if not found:
        return ""
    try:
        return str(found[-1].data, "utf-8")
    except UnicodeDecodeError:
        raise _DecodeError(f"field {number} of {where} is not valid UTF-8") from None


def _get_message(fields: _Fields, number: int, where: str) -> memoryview | None:
    """Return a singular embedded message, or None when it is absent."""
    found = _occurrences(fields, number, _LEN, where)
    if not found:
        return None
    if len(found) == 1:
        return found[0].data
    # Protobuf merges repeated occurrences of a singular message, which is exactly what
    # parsing their concatenation does.
    return memoryview(b"".join(field.data for field in found))


def _get_repeated(fields: _Fields, number: int, where: str) -> list[memoryview]:
    """Return every occurrence of a repeated embedded message, in order."""
    return [field.data for field in _occurrences(fields, number, _LEN, where)]


def _read_dim(buf: memoryview, where: str) -> int | None:
    """One TensorShapeProto.Dimension: a concrete size, or None for symbolic/unknown."""
    fields = _parse(buf, where)
    value = _get_int(fields, 1, where)
    # Some exporters write -1 for "unknown"; it carries no more information than dim_param.
    if value is None or value < 0:
        return None
    return value


def _read_shape(buf: memoryview | None, where: str) -> tuple[int | None, ...]:
    """Convert a TensorShapeProto to a tuple; an absent shape (unknown rank) reads as ()."""
    if buf is None:
        return ()
    fields = _parse(buf, where)
    dims = _get_repeated(fields, 1, where)
    return tuple(_read_dim(dim, f"dimension {index} of {where}") for index, dim in enumerate(dims))


def _dtype_name(elem_type: int | None, where: str) -> str:
    """Map TensorProto.DataType to a numpy dtype name, or explain why it cannot be served."""
    code = 0 if elem_type is None else elem_type
    if code in _DTYPES:
        return _DTYPES[code]
    label = _UNSUPPORTED_DTYPES.get(code, "unknown")
    raise _DecodeError(f"unsupported tensor type {code} ({label}) for {where}")


def _read_tensor_type(type_buf: memoryview, where: str) -> tuple[str, tuple[int | None, ...]]:
    """Extract dtype and shape from a TypeProto, rejecting sequences, maps and the like."""
    type_fields = _parse(type_buf, f"type of {where}")
    tensor = _get_message(type_fields, 1, f"type of {where}")
    if tensor is None:
        _reject_non_tensor(type_fields, where)
    tensor_fields = _parse(tensor, f"tensor type of {where}")
    dtype = _dtype_name(_get_int(tensor_fields, 1, f"tensor type of {where}"), where)
    shape_buf = _get_message(tensor_fields, 2, f"tensor type of {where}")
    shape = _read_shape(shape_buf, f"shape of {where}")
    return dtype, shape


def _reject_non_tensor(type_fields: _Fields, where: str) -> NoReturn:
    """Name what a non-tensor TypeProto holds, so the user learns what their model uses."""
    for number, kind in _NON_TENSOR_TYPES.items():
        if number in type_fields:
            raise _DecodeError(f"{where} is {kind}, not a tensor")
    raise _DecodeError(f"{where} has no tensor type")


def _read_zipmap_type(type_buf: memoryview, where: str) -> tuple[str, str] | None:
    """(key dtype, value dtype) of a ``seq(map(int64|string, float tensor))`` TypeProto.

    None for any other type, which the tensor reader then accepts or refuses by name.
    """
    sequence = _member(type_buf, 4, f"type of {where}")
    element = None if sequence is None else _member(sequence, 1, f"sequence type of {where}")
    map_buf = None if element is None else _member(element, 5, f"element type of {where}")
    if map_buf is None:
        return None
    map_fields = _parse(map_buf, f"map type of {where}")
    key = _DTYPES.get(_get_int(map_fields, 1, f"map type of {where}") or 0)
    value_type = _get_message(map_fields, 2, f"map type of {where}")
    tensor = None if value_type is None else _member(value_type, 1, f"value type of {where}")
    if key not in _ZIPMAP_KEY_DTYPES or tensor is None:
        return None
    what = f"value tensor type of {where}"
    value = _DTYPES.get(_get_int(_parse(tensor, what), 1, what) or 0)
    return (key, value) if value in _FLOAT_DTYPES else None


def _member(buf: memoryview, number: int, where: str) -> memoryview | None:
    """One embedded message field of the message in ``buf``, or None when it is absent."""
    return _get_message(_parse(buf, where), number, where)


def _read_value_info(
    buf: memoryview, role: str, index: int, constants: frozenset[str] = frozenset()
) -> TensorInfo | None:
    """Decode graph input/output number ``index``; None if it names a constant.

    Constants are skipped before their type is looked at, so an exotic initializer dtype never
    blocks reading a model whose real inputs are fine.
    """
    where = f"{role} {index}"
    fields = _parse(buf, where)
    name = _get_str(fields, 1, where)
    if name in constants:
        return None
    # Once the name is known it identifies the tensor far better than its position.
    described = f"{role} {name!r}"
    type_buf = _get_message(fields, 2, described)
    if type_buf is None:
        raise _DecodeError(f"{described} has no type")
    # Only outputs: a service can turn a ZipMap's maps into JSON, but has no way to build them
    # from a request.
    zipmap = _read_zipmap_type(type_buf, described) if role == "output" else None
    if zipmap is not None:
        key_dtype, dtype = zipmap
        return TensorInfo(name, dtype, (None,), kind="zipmap", key_dtype=key_dtype)
    dtype, shape = _read_tensor_type(type_buf, described)
    return TensorInfo(name=name, dtype=dtype, shape=shape)


def _initializer_names(graph: _Fields) -> set[str]:
    """Collect names of constant tensors, which may also be listed among the graph inputs."""
    names: set[str] = set()
    for index, tensor in enumerate(_get_repeated(graph, 5, "graph")):
        where = f"initializer {index}"
        names.add(_get_str(_parse(tensor, where), 8, where))
    for index, sparse in enumerate(_get_repeated(graph, 15, "graph")):
        where = f"sparse initializer {index}"
        values = _get_message(_parse(sparse, where), 1, where)
        if values is not None:
            # A sparse initializer is named by its values tensor.
            names.add(_get_str(_parse(values, f"values of {where}"), 8, where))
    return names


def _read_graph(graph: _Fields) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """Return inputs (minus initializers, which callers never feed) and outputs of a graph."""
    constants = frozenset(_initializer_names(graph))
    inputs = (
        _read_value_info(item, "input", index, constants)
        for index, item in enumerate(_get_repeated(graph, 11, "graph"))
    )
    outputs = (
        _read_value_info(item, "output", index)
        for index, item in enumerate(_get_repeated(graph, 12, "graph"))
    )
    return _present(inputs), _present(outputs)


def _present(infos: Iterable[TensorInfo | None]) -> tuple[TensorInfo, ...]:
    """Drop the placeholders left by skipped constants."""
    return tuple(info for info in infos if info is not None)


def _class_labels(graph: _Fields) -> tuple[str, ...]:
    """Labels of the first ONNX-ML classifier or ZipMap node of the graph, as strings."""
    for index, node in enumerate(_get_repeated(graph, 1, "graph")):
        where = f"node {index}"
        fields = _parse(node, where)
        if (
            _get_str(fields, 7, where) != _ML_DOMAIN
            or _get_str(fields, 4, where) not in _LABELLED_OPS
        ):
            continue
        described = f"node {_get_str(fields, 3, where)!r} ({_get_str(fields, 4, where)})"
        attributes = _label_attributes(_get_repeated(fields, 5, described), described)
        if _STRING_LABELS in attributes:
            return _attribute_strings(
                attributes[_STRING_LABELS], f"{_STRING_LABELS} of {described}"
            )
        for name in _INT_LABELS:
            if name in attributes:
                return _attribute_ints(attributes[name], f"{name} of {described}")
        return ()
    return ()


def _label_attributes(attributes: list[memoryview], where: str) -> dict[str, memoryview]:
    """Map the wanted classlabels_* attributes of a node to their undecoded AttributeProto.

    Only the name is looked for in the others: a tree ensemble's node arrays are written as
    one varint field per value, and decoding them all would cost seconds on a large forest.
    """
    found: dict[str, memoryview] = {}
    for index, attribute in enumerate(attributes):
        name = _attribute_name(attribute, f"attribute {index} of {where}")
        if name == _STRING_LABELS or name in _INT_LABELS:
            found[name] = attribute
    return found


def _attribute_name(buf: memoryview, where: str) -> str:
    """The name of an AttributeProto, which encoders write first, read without the rest."""
    for field in _iter_fields(buf, where):
        if field.number == 1 and field.wire_type == _LEN:
            try:
                return str(field.data, "utf-8")
            except UnicodeDecodeError:
                raise _DecodeError(f"the name of {where} is not valid UTF-8") from None
    return ""


def _attribute_strings(buf: memoryview, where: str) -> tuple[str, ...]:
    """AttributeProto.strings, decoded as UTF-8."""
    fields = _parse(buf, where)
    try:
        return tuple(str(item, "utf-8") for item in _get_repeated(fields, 9, where))
    except UnicodeDecodeError:
        raise _DecodeError(f"a class label of {where} is not valid UTF-8") from None


def _attribute_ints(buf: memoryview, where: str) -> tuple[str, ...]:
    """AttributeProto.ints as decimal strings; encoders may write them packed or one by one."""
    values: list[int] = []
    for field in _parse(buf, where).get(8, []):
        if field.wire_type == _VARINT:
            values.append(field.value)
        elif field.wire_type == _LEN:
            values.extend(_packed_varints(field.data, where))
        else:
            raise _DecodeError(f"field 8 of {where} is {_WIRE_NAMES[field.wire_type]}")
    return tuple(str(_signed(value)) for value in values)


def _packed_varints(buf: memoryview, where: str) -> list[int]:
    """The values of a packed repeated varint field."""
    values: list[int] = []
    pos = 0
    while pos < len(buf):
        value, pos = _read_varint(buf, pos, where)
        values.append(value)
    return values


def _default_opset(model: _Fields) -> int:
    """Return the default ONNX operator set version, or 0 when the model does not import it."""
    for index, entry in enumerate(_get_repeated(model, 8, "ModelProto")):
        where = f"opset_import {index}"
        fields = _parse(entry, where)
        if _get_str(fields, 1, where) in _DEFAULT_DOMAINS:
            return _get_int(fields, 2, where) or 0
    return 0


def _read_model(data: bytes) -> ModelSignature:
    """Decode a serialized ModelProto; raises _DecodeError without the file name."""
    if not data:
        raise _DecodeError("empty file, not an ONNX model")
    try:
        model = _parse(memoryview(data), "ModelProto")
        ir_version = _get_int(model, 1, "ModelProto")
        graph = _get_message(model, 7, "ModelProto")
    except _DecodeError as exc:
        raise _DecodeError(f"not a valid ONNX model ({exc})") from None
    # Both fields are mandatory in ONNX; checking them also rejects stray bytes that happen
    # to decode as some protobuf message.
    if ir_version is None or ir_version <= 0:
        raise _DecodeError("not an ONNX model (missing or invalid ir_version)")
    if graph is None:
        raise _DecodeError("not an ONNX model (no graph)")
    graph_fields = _parse(graph, "graph")
    inputs, outputs = _read_graph(graph_fields)
    return ModelSignature(
        inputs=inputs,
        outputs=outputs,
        producer_name=_get_str(model, 2, "ModelProto"),
        producer_version=_get_str(model, 3, "ModelProto"),
        ir_version=ir_version,
        opset=_default_opset(model),
        sha256=hashlib.sha256(data).hexdigest(),
        class_labels=_class_labels(graph_fields),
    )


def read_signature(path: Path) -> ModelSignature:
    """Read the inputs, outputs and metadata of the ONNX model stored at ``path``.

    Raises OnnxFormatError, naming the file, when it is not a well-formed ONNX model or uses
    input/output types a service cannot expose.  I/O errors propagate unchanged.
    """
    data = Path(path).read_bytes()
    try:
        return _read_model(data)
    except _DecodeError as exc:
        raise OnnxFormatError(f"{path}: {exc}") from None
