"""Tests for builder_core.onnx_info, checked against what the real ``onnx`` package reports."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from builder_core import onnx_info
from builder_core.onnx_info import ModelSignature, OnnxFormatError, TensorInfo, read_signature

LABELLED_OPS = ("LinearClassifier", "TreeEnsembleClassifier", "SVMClassifier", "ZipMap")
ROOT = Path(__file__).resolve().parent.parent
ZOO_MODELS = sorted(ROOT.glob("sample_models/zoo/*/model.onnx"))

# --------------------------------------------------------------------------- expected values


def _onnx_dtype(elem_type: int) -> str:
    """Return the dtype name onnx itself associates with a TensorProto.DataType."""
    if elem_type == TensorProto.STRING:
        # numpy stores strings as ``object``; the signature deliberately says "string".
        return "string"
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name


def _onnx_tensor(value_info: onnx.ValueInfoProto) -> TensorInfo:
    """Build a TensorInfo from onnx's own parse of a ValueInfoProto."""
    if value_info.type.HasField("sequence_type"):
        # The only non-tensor the reader accepts: a ZipMap's sequence of maps, one per row.
        map_type = value_info.type.sequence_type.elem_type.map_type
        value_dtype = _onnx_dtype(map_type.value_type.tensor_type.elem_type)
        key_dtype = _onnx_dtype(map_type.key_type)
        return TensorInfo(value_info.name, value_dtype, (None,), "zipmap", key_dtype)
    tensor_type = value_info.type.tensor_type
    shape: tuple[int | None, ...] = tuple(
        dim.dim_value if dim.HasField("dim_value") and dim.dim_value >= 0 else None
        for dim in tensor_type.shape.dim
    )
    return TensorInfo(value_info.name, _onnx_dtype(tensor_type.elem_type), shape)


def _onnx_class_labels(graph: onnx.GraphProto) -> tuple[str, ...]:
    """The labels of the first ONNX-ML classifier or ZipMap node, read with onnx."""
    for node in graph.node:
        if node.domain == "ai.onnx.ml" and node.op_type in LABELLED_OPS:
            values = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if "classlabels_strings" in values:
                return tuple(label.decode() for label in values["classlabels_strings"])
            # Linear and SVM classifiers call their integer labels ints, the others int64s.
            ints = values.get("classlabels_int64s", values.get("classlabels_ints", []))
            return tuple(str(label) for label in ints)
    return ()


def _expected(path: Path) -> ModelSignature:
    """Compute the signature of the model at ``path`` the way onnx.load sees it."""
    model = onnx.load(str(path))
    graph = model.graph
    constants = {tensor.name for tensor in graph.initializer}
    constants |= {sparse.values.name for sparse in graph.sparse_initializer}
    opsets = [op.version for op in model.opset_import if op.domain in ("", "ai.onnx")]
    return ModelSignature(
        inputs=tuple(_onnx_tensor(vi) for vi in graph.input if vi.name not in constants),
        outputs=tuple(_onnx_tensor(vi) for vi in graph.output),
        producer_name=model.producer_name,
        producer_version=model.producer_version,
        ir_version=model.ir_version,
        opset=opsets[0] if opsets else 0,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        class_labels=_onnx_class_labels(graph),
    )


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


# --------------------------------------------------------------------------- model builders


def _classifier() -> onnx.ModelProto:
    """Build a small, checker-valid classifier with the features the generator cares about."""
    weights = np.arange(12, dtype=np.float32).reshape(4, 3)
    graph = helper.make_graph(
        nodes=[
            helper.make_node("MatMul", ["features", "weights"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
            helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
            helper.make_node("Identity", ["tag"], ["tag_out"]),
        ],
        name="classifier",
        inputs=[
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 4]),
            # Listed as an input for old runtimes, but it is a constant, not a model input.
            helper.make_tensor_value_info("weights", TensorProto.FLOAT, [4, 3]),
            helper.make_tensor_value_info("tag", TensorProto.STRING, ["batch"]),
        ],
        outputs=[
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("tag_out", TensorProto.STRING, ["batch"]),
        ],
        initializer=[onnx.numpy_helper.from_array(weights, "weights")],
        doc_string="unknown fields everywhere should be skipped",
    )
    model = helper.make_model(
        graph,
        producer_name="builder-tests",
        producer_version="1.2.3",
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)],
        doc_string="a classifier",
    )
    helper.set_model_props(model, {"author": "tests"})
    onnx.checker.check_model(model)
    return model


def _identity_model(elem_type: int, shape: list[int | str | None] | None) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", elem_type, shape)],
        [helper.make_tensor_value_info("y", elem_type, shape)],
    )
    return helper.make_model(graph, producer_name="identity")


def _ml_classifier(labels: list[int] | list[str], *, zipmap: bool = True) -> onnx.ModelProto:
    """A checker-valid ONNX-ML linear classifier of 2 features, with a ZipMap by default."""
    by_strings = isinstance(labels[0], str)
    label_attribute = "classlabels_strings" if by_strings else "classlabels_ints"
    zipmap_attribute = "classlabels_strings" if by_strings else "classlabels_int64s"
    label_type = TensorProto.STRING if by_strings else TensorProto.INT64
    # Typed loosely: make_node's stubs know its named parameters, not attribute keywords.
    classifier_labels: dict[str, Any] = {label_attribute: labels}
    zipmap_labels: dict[str, Any] = {zipmap_attribute: labels}
    nodes = [
        helper.make_node(
            "LinearClassifier",
            ["x"],
            ["label", "scores"],
            domain="ai.onnx.ml",
            coefficients=[0.5] * (2 * len(labels)),
            intercepts=[0.0] * len(labels),
            **classifier_labels,
        )
    ]
    outputs = [
        helper.make_tensor_value_info("label", label_type, [None]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, len(labels)]),
    ]
    if zipmap:
        nodes.append(
            helper.make_node(
                "ZipMap",
                ["scores"],
                ["probabilities"],
                domain="ai.onnx.ml",
                **zipmap_labels,
            )
        )
        outputs[1] = helper.make_value_info("probabilities", _zipmap_type(label_type))
    graph = helper.make_graph(
        nodes, "ml", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])], outputs
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    )
    onnx.checker.check_model(model)
    return model


def _zipmap_type(key_type: int, value_type: int = TensorProto.FLOAT) -> onnx.TypeProto:
    """seq(map(key_type, tensor(value_type))), the type of skl2onnx's ZipMap output."""
    value = helper.make_tensor_type_proto(value_type, None)
    return helper.make_sequence_type_proto(helper.make_map_type_proto(key_type, value))


@pytest.fixture
def classifier_path(tmp_path: Path) -> Path:
    return _save(_classifier(), tmp_path / "classifier.onnx")


# --------------------------------------------------------------------------- happy paths


def test_classifier_matches_onnx(classifier_path: Path) -> None:
    assert read_signature(classifier_path) == _expected(classifier_path)


def test_classifier_details(classifier_path: Path) -> None:
    """Spot checks, so a shared mistake in _expected cannot hide a wrong answer."""
    signature = read_signature(classifier_path)
    assert [t.name for t in signature.inputs] == ["features", "tag"]
    assert signature.inputs[0] == TensorInfo("features", "float32", (None, 4))
    assert signature.inputs[1].dtype == "string"
    assert [t.name for t in signature.outputs] == ["label", "probabilities", "tag_out"]
    assert signature.outputs[0] == TensorInfo("label", "int64", (None,))
    assert signature.outputs[1] == TensorInfo("probabilities", "float32", (None, 3))
    assert signature.opset == 17
    assert signature.producer_name == "builder-tests"
    assert signature.producer_version == "1.2.3"
    assert signature.ir_version == onnx.IR_VERSION


@pytest.mark.parametrize("path", sorted(ROOT.glob("sample_models/*/*.onnx")) + ZOO_MODELS, ids=str)
def test_sample_models_match_onnx(path: Path) -> None:
    assert read_signature(path) == _expected(path)


def _zoo_expected() -> dict[str, tuple[list[TensorInfo], list[TensorInfo], tuple[str, ...]]]:
    """What each zoo model must read as: inputs, outputs and class labels."""
    digits = tuple(str(digit) for digit in range(10))
    label, zipmap = "output_label", "output_probability"
    return {
        "regressor": (
            [TensorInfo("input", "float32", (None, 10))],
            [TensorInfo("variable", "float32", (None, 1))],
            (),
        ),
        "binary": (
            [TensorInfo("input", "float32", (None, 30))],
            [
                TensorInfo(label, "int64", (None,)),
                TensorInfo(zipmap, "float32", (None,), "zipmap", "int64"),
            ],
            ("0", "1"),
        ),
        "multiclass": (
            [TensorInfo("input", "float32", (None, 4))],
            [
                TensorInfo(label, "string", (None,)),
                TensorInfo(zipmap, "float32", (None,), "zipmap", "string"),
            ],
            ("setosa", "versicolor", "virginica"),
        ),
        "tabular": (
            [
                TensorInfo("age", "float32", (None, 1)),
                TensorInfo("income", "float32", (None, 1)),
                TensorInfo("city", "string", (None, 1)),
            ],
            [
                TensorInfo(label, "int64", (None,)),
                TensorInfo(zipmap, "float32", (None,), "zipmap", "int64"),
            ],
            ("0", "1"),
        ),
        "integer": (
            [TensorInfo("input", "int64", (None, 64))],
            [
                TensorInfo("label", "int64", (None,)),
                TensorInfo("probabilities", "float32", (None, 10)),
            ],
            digits,
        ),
        "two-outputs": (
            [TensorInfo("x", "float32", (None, 3))],
            [TensorInfo("total", "float32", (None, 1)), TensorInfo("scaled", "float32", (None, 3))],
            (),
        ),
    }


def test_zoo_signatures() -> None:
    """Spot checks of the committed zoo, written out so _expected cannot share a mistake."""
    expected = _zoo_expected()
    assert sorted(path.parent.name for path in ZOO_MODELS) == sorted(expected)
    for path in ZOO_MODELS:
        inputs, outputs, labels = expected[path.parent.name]
        signature = read_signature(path)
        assert list(signature.inputs) == inputs, path
        assert list(signature.outputs) == outputs, path
        assert signature.class_labels == labels, path
        assert signature.opset == 17, path


def test_accepts_str_path(classifier_path: Path) -> None:
    # Callers holding a path from a config file may pass a plain string; that must work too.
    as_text: Any = str(classifier_path)
    assert read_signature(as_text) == _expected(classifier_path)


@pytest.mark.parametrize("elem_type", sorted(onnx_info._DTYPES))
def test_every_supported_dtype(tmp_path: Path, elem_type: int) -> None:
    path = _save(_identity_model(elem_type, ["n", 2]), tmp_path / "m.onnx")
    signature = read_signature(path)
    assert signature == _expected(path)
    assert signature.inputs[0].dtype == _onnx_dtype(elem_type)


@pytest.mark.parametrize(
    "shape",
    [[], [1], [0, 3], ["batch", "seq", 768], [None, 3], [2**40, 1]],
    ids=["scalar", "one", "zero-size", "symbolic", "unnamed-unknown", "huge"],
)
def test_shapes_match_onnx(tmp_path: Path, shape: list[int | str | None]) -> None:
    path = _save(_identity_model(TensorProto.FLOAT, shape), tmp_path / "m.onnx")
    assert read_signature(path) == _expected(path)


def test_negative_dim_is_unknown(tmp_path: Path) -> None:
    """Some exporters write -1 for "any size"; it must not become a literal shape entry."""
    path = _save(_identity_model(TensorProto.FLOAT, [-1, 3]), tmp_path / "m.onnx")
    assert onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0].dim_value == -1
    assert read_signature(path).inputs[0].shape == (None, 3)


def test_unknown_rank_reads_as_empty_shape(tmp_path: Path) -> None:
    path = _save(_identity_model(TensorProto.FLOAT, None), tmp_path / "m.onnx")
    assert not onnx.load(str(path)).graph.input[0].type.tensor_type.HasField("shape")
    assert read_signature(path).inputs[0].shape == ()


def test_sparse_initializer_listed_as_input_is_not_an_input(tmp_path: Path) -> None:
    values = helper.make_tensor("sparse_w", TensorProto.FLOAT, [2], [1.0, 2.0])
    indices = helper.make_tensor("sparse_w_idx", TensorProto.INT64, [2], [0, 3])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "sparse_w"], ["y"])],
        "sparse",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [4]),
            helper.make_tensor_value_info("sparse_w", TensorProto.FLOAT, [4]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        sparse_initializer=[helper.make_sparse_tensor(values, indices, [4])],
    )
    path = _save(helper.make_model(graph), tmp_path / "m.onnx")
    signature = read_signature(path)
    assert signature == _expected(path)
    assert [t.name for t in signature.inputs] == ["x"]


@pytest.mark.parametrize(
    ("opsets", "expected"),
    [
        ([("ai.onnx", 13)], 13),
        ([("com.microsoft", 1), ("", 19)], 19),
        ([("ai.onnx.ml", 3)], 0),
        ([], 0),
    ],
)
def test_default_domain_opset(tmp_path: Path, opsets: list[tuple[str, int]], expected: int) -> None:
    model = _identity_model(TensorProto.FLOAT, [1])
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(domain, version) for domain, version in opsets)
    path = _save(model, tmp_path / "m.onnx")
    signature = read_signature(path)
    assert signature == _expected(path)
    assert signature.opset == expected


def _unknown_fields() -> bytes:
    """Fields 900-903 (unused by ONNX) in each wire type: fixed64, fixed32, varint, bytes."""

    def key(number: int, wire_type: int) -> bytes:
        # Two-byte varint: enough for field numbers below 2048.
        raw = number << 3 | wire_type
        return bytes([raw & 0x7F | 0x80, raw >> 7])

    fields = [
        (key(900, 1), (7).to_bytes(8, "little")),
        (key(901, 5), (9).to_bytes(4, "little")),
        (key(902, 0), bytes([0xFF] * 9 + [0x01])),  # the longest legal varint
        (key(903, 2), bytes([3]) + b"abc"),
    ]
    return b"".join(field_key + payload for field_key, payload in fields)


def test_unknown_fields_of_every_wire_type_are_skipped(tmp_path: Path) -> None:
    """Future ONNX versions may add fields at any level; they must be skipped, not misread."""
    model = _classifier()
    graph = model.graph
    nested = [
        graph.input[0].type.tensor_type.shape.dim[1],
        graph.input[0],
        graph.output[1].type,
        graph.initializer[0],
        model.opset_import[0],
    ]
    for message in nested:
        # Merging raw bytes is how protobuf stores fields it does not know; it re-emits them.
        message.MergeFromString(_unknown_fields())
    path = tmp_path / "extra.onnx"
    path.write_bytes(_unknown_fields() + model.SerializeToString() + _unknown_fields())
    signature = read_signature(path)
    assert signature == _expected(path)
    plain = read_signature(_save(_classifier(), tmp_path / "plain.onnx"))
    assert signature == dataclasses.replace(plain, sha256=signature.sha256)


def test_repeated_graph_field_is_merged_like_protobuf(tmp_path: Path) -> None:
    """Concatenated messages merge in protobuf: the second graph's inputs are appended."""
    first = _identity_model(TensorProto.FLOAT, [1])
    second = _identity_model(TensorProto.INT64, [2])
    second.graph.input[0].name = "x2"
    second.producer_name = "second"
    path = tmp_path / "merged.onnx"
    path.write_bytes(first.SerializeToString() + second.SerializeToString())
    signature = read_signature(path)
    assert signature == _expected(path)
    assert [t.name for t in signature.inputs] == ["x", "x2"]
    assert signature.producer_name == "second"


# --------------------------------------------------------------------------- classifiers


@pytest.mark.parametrize(
    ("labels", "key_dtype", "label_dtype"),
    [([0, 1, 2], "int64", "int64"), (["cat", "dog"], "string", "string")],
    ids=["int64-keys", "string-keys"],
)
def test_zipmap_output_is_read(
    tmp_path: Path, labels: list[int] | list[str], key_dtype: str, label_dtype: str
) -> None:
    path = _save(_ml_classifier(labels), tmp_path / "m.onnx")
    signature = read_signature(path)
    assert signature == _expected(path)
    assert signature.outputs == (
        TensorInfo("label", label_dtype, (None,)),
        TensorInfo("probabilities", "float32", (None,), kind="zipmap", key_dtype=key_dtype),
    )
    assert signature.class_labels == tuple(str(label) for label in labels)


def test_tensor_info_defaults_to_a_tensor() -> None:
    """Callers built before ZipMap support construct TensorInfo positionally."""
    info = TensorInfo("x", "float32", (None, 4))
    assert (info.kind, info.key_dtype) == ("tensor", "")


@pytest.mark.parametrize("value_type", [TensorProto.FLOAT, TensorProto.DOUBLE])
def test_zipmap_value_dtype_is_reported(tmp_path: Path, value_type: int) -> None:
    model = _identity_model(TensorProto.FLOAT, [1])
    model.graph.output.append(
        helper.make_value_info("zipped", _zipmap_type(TensorProto.INT64, value_type))
    )
    path = _save(model, tmp_path / "m.onnx")
    assert read_signature(path).outputs[1] == TensorInfo(
        "zipped", _onnx_dtype(value_type), (None,), "zipmap", "int64"
    )


def test_class_labels_from_a_linear_classifier(tmp_path: Path) -> None:
    path = _save(_ml_classifier([3, 1, 2], zipmap=False), tmp_path / "m.onnx")
    signature = read_signature(path)
    assert signature == _expected(path)
    assert signature.class_labels == ("3", "1", "2")


def test_class_labels_from_a_zipmap(tmp_path: Path) -> None:
    """A ZipMap alone declares the labels, e.g. behind a classifier from another domain."""
    graph = helper.make_graph(
        [
            helper.make_node(
                "ZipMap",
                ["scores"],
                ["probabilities"],
                domain="ai.onnx.ml",
                classlabels_strings=["setosa", "versicolor", "virginica"],
            )
        ],
        "zipmap",
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, 3])],
        [helper.make_value_info("probabilities", _zipmap_type(TensorProto.STRING))],
    )
    path = _save(helper.make_model(graph), tmp_path / "m.onnx")
    signature = read_signature(path)
    assert signature == _expected(path)
    assert signature.class_labels == ("setosa", "versicolor", "virginica")


def test_class_labels_come_from_the_first_labelled_ml_node(tmp_path: Path) -> None:
    model = _ml_classifier([0, 1])
    # A Scaler is ONNX-ML too, but declares no labels; the ZipMap's strings come too late.
    model.graph.node.insert(
        0, helper.make_node("Scaler", ["x"], ["x_scaled"], domain="ai.onnx.ml", scale=[1.0, 1.0])
    )
    model.graph.node[2].ClearField("attribute")
    model.graph.node[2].attribute.append(
        helper.make_attribute("classlabels_strings", ["no", "yes"])
    )
    path = _save(model, tmp_path / "m.onnx")
    assert read_signature(path).class_labels == ("0", "1")


def test_class_labels_ignore_other_domains(tmp_path: Path) -> None:
    """An op named like an ONNX-ML classifier in another domain is not one."""
    model = _ml_classifier([0, 1], zipmap=False)
    model.graph.node[0].domain = "com.example"
    path = _save(model, tmp_path / "m.onnx")
    assert read_signature(path).class_labels == ()


def test_no_classifier_node_means_no_class_labels(classifier_path: Path) -> None:
    assert read_signature(classifier_path).class_labels == ()


def _varint(value: int) -> bytes:
    """Protobuf base-128 encoding of a non-negative integer."""
    out = bytearray()
    while True:
        out.append(value & 0x7F | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def test_packed_int_labels_are_read(tmp_path: Path) -> None:
    """Python's protobuf writes ONNX's repeated ints one by one; other encoders pack them."""
    model = _ml_classifier([0, 1], zipmap=False)
    node = model.graph.node[0]
    node.attribute.remove(next(a for a in node.attribute if a.name == "classlabels_ints"))
    del model.graph.node[:]
    packed = b"".join(_varint(value % 2**64) for value in (-1, 7))
    attribute = (
        _length_delimited(1, b"classlabels_ints")
        + _length_delimited(8, packed)
        + _varint(20 << 3)
        + _varint(onnx.AttributeProto.INTS)
    )
    graph = _length_delimited(1, node.SerializeToString() + _length_delimited(5, attribute))
    # A second graph field merges into the first, as in protobuf, adding the hand-made node.
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString() + _length_delimited(7, graph))
    signature = read_signature(path)
    assert signature == _expected(path)
    assert signature.class_labels == ("-1", "7")


# --------------------------------------------------------------------------- unsupported types


def test_sequence_input_is_rejected_by_name(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("SequenceLength", ["chunks"], ["n"])],
        "seq",
        [helper.make_tensor_sequence_value_info("chunks", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("n", TensorProto.INT64, [])],
    )
    path = _save(helper.make_model(graph), tmp_path / "m.onnx")
    with pytest.raises(OnnxFormatError, match=r"'chunks' is a sequence, not a tensor") as info:
        read_signature(path)
    assert str(path) in str(info.value)


def test_map_output_is_rejected_by_name(tmp_path: Path) -> None:
    map_type = helper.make_map_type_proto(
        TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, [])
    )
    sequence_of_maps = helper.make_sequence_type_proto(map_type)
    graph = helper.make_graph(
        [],
        "zipmap",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [
            helper.make_tensor_value_info("x_out", TensorProto.FLOAT, [1]),
            helper.make_value_info("scores", map_type),
            helper.make_value_info("zipped", sequence_of_maps),
        ],
    )
    path = _save(helper.make_model(graph), tmp_path / "m.onnx")
    with pytest.raises(OnnxFormatError, match=r"output 'scores' is a map, not a tensor"):
        read_signature(path)


def _float_tensor() -> onnx.TypeProto:
    return helper.make_tensor_type_proto(TensorProto.FLOAT, None)


@pytest.mark.parametrize(
    ("output_type", "kind"),
    [
        (helper.make_sequence_type_proto(_float_tensor()), "a sequence"),
        (helper.make_map_type_proto(TensorProto.INT64, _float_tensor()), "a map"),
        (helper.make_optional_type_proto(_float_tensor()), "an optional"),
        (helper.make_sparse_tensor_type_proto(TensorProto.FLOAT, [2]), "a sparse tensor"),
        (onnx.TypeProto(opaque_type=onnx.TypeProto.Opaque(name="blob")), "an opaque value"),
        # Sequences of maps that no ZipMap produces: other keys, non-float values, no tensor.
        (_zipmap_type(TensorProto.INT32), "a sequence"),
        (_zipmap_type(TensorProto.INT64, TensorProto.INT64), "a sequence"),
        (_zipmap_type(TensorProto.STRING, TensorProto.STRING), "a sequence"),
        (
            helper.make_sequence_type_proto(
                helper.make_map_type_proto(TensorProto.INT64, _zipmap_type(TensorProto.INT64))
            ),
            "a sequence",
        ),
        (helper.make_sequence_type_proto(_zipmap_type(TensorProto.INT64)), "a sequence"),
    ],
    ids=[
        "sequence-of-tensors",
        "map",
        "optional",
        "sparse",
        "opaque",
        "int32-keys",
        "int64-values",
        "string-values",
        "map-of-sequences",
        "sequence-of-zipmaps",
    ],
)
def test_non_zipmap_output_is_rejected_by_name(
    tmp_path: Path, output_type: onnx.TypeProto, kind: str
) -> None:
    model = _identity_model(TensorProto.FLOAT, [1])
    model.graph.output.append(helper.make_value_info("odd", output_type))
    path = _save(model, tmp_path / "m.onnx")
    with pytest.raises(OnnxFormatError, match=rf"output 'odd' is {kind}, not a tensor") as info:
        read_signature(path)
    assert str(path) in str(info.value)


def test_zipmap_typed_input_is_rejected_by_name(tmp_path: Path) -> None:
    """A service can return a ZipMap's maps as JSON, but cannot build one from a request."""
    model = _identity_model(TensorProto.FLOAT, [1])
    model.graph.input.append(helper.make_value_info("maps", _zipmap_type(TensorProto.INT64)))
    path = _save(model, tmp_path / "m.onnx")
    with pytest.raises(OnnxFormatError, match=r"input 'maps' is a sequence, not a tensor"):
        read_signature(path)


@pytest.mark.parametrize("elem_type", [TensorProto.COMPLEX64, TensorProto.FLOAT8E4M3FN, 999])
def test_unsupported_dtype_names_the_tensor(tmp_path: Path, elem_type: int) -> None:
    path = _save(_identity_model(elem_type, [1]), tmp_path / "m.onnx")
    with pytest.raises(OnnxFormatError, match=rf"unsupported tensor type {elem_type} .*'x'"):
        read_signature(path)


def test_initializer_input_with_unsupported_dtype_is_ignored(tmp_path: Path) -> None:
    """Only tensors callers feed need a servable dtype; constants may be anything."""
    model = _identity_model(TensorProto.FLOAT, [1])
    weights = onnx.numpy_helper.from_array(np.array([1 + 2j], dtype=np.complex64), "w")
    model.graph.initializer.append(weights)
    model.graph.input.append(helper.make_tensor_value_info("w", TensorProto.COMPLEX64, [1]))
    path = _save(model, tmp_path / "m.onnx")
    signature = read_signature(path)
    assert signature == _expected(path)
    assert [t.name for t in signature.inputs] == ["x"]


def test_missing_type_is_rejected(tmp_path: Path) -> None:
    model = _identity_model(TensorProto.FLOAT, [1])
    model.graph.output[0].ClearField("type")
    path = _save(model, tmp_path / "m.onnx")
    with pytest.raises(OnnxFormatError, match=r"output 'y' has no type"):
        read_signature(path)


# --------------------------------------------------------------------------- broken files


def _assert_rejected(path: Path, fragment: str = "") -> OnnxFormatError:
    with pytest.raises(OnnxFormatError) as info:
        read_signature(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)
    return info.value


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    _assert_rejected(path, "empty file")


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "README.txt"
    path.write_text("This is not a model.\nJust some text, with numbers 1 2 3.\n")
    _assert_rejected(path, "not")


def test_python_file(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(Path(onnx_info.__file__).read_bytes())
    _assert_rejected(path)


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "random.onnx"
    path.write_bytes(random.Random(seed).randbytes(2000))
    _assert_rejected(path)


def test_truncated_file(classifier_path: Path) -> None:
    data = classifier_path.read_bytes()
    path = classifier_path.with_name("truncated.onnx")
    path.write_bytes(data[: len(data) // 2])
    _assert_rejected(path, "truncated")


def test_every_prefix_fails_cleanly_or_parses(classifier_path: Path) -> None:
    """Cutting the file anywhere may only ever produce OnnxFormatError, never IndexError."""
    data = classifier_path.read_bytes()
    path = classifier_path.with_name("prefix.onnx")
    for size in range(len(data)):
        path.write_bytes(data[:size])
        try:
            read_signature(path)
        except OnnxFormatError as exc:
            assert str(path) in str(exc)


def test_byte_corruption_fails_cleanly_or_parses(classifier_path: Path) -> None:
    data = classifier_path.read_bytes()
    path = classifier_path.with_name("corrupt.onnx")
    rng = random.Random(1234)
    for _ in range(500):
        corrupt = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            corrupt[rng.randrange(len(corrupt))] = rng.randrange(256)
        path.write_bytes(bytes(corrupt))
        try:
            read_signature(path)
        except OnnxFormatError as exc:
            assert str(path) in str(exc)


def test_ml_classifier_prefixes_and_corruption_fail_cleanly(tmp_path: Path) -> None:
    """The ZipMap type and label attributes are decoded too, so they must fail cleanly."""
    data = _ml_classifier(["no", "yes"]).SerializeToString()
    path = tmp_path / "ml.onnx"
    rng = random.Random(99)
    corrupted = []
    for _ in range(300):
        corrupt = bytearray(data)
        corrupt[rng.randrange(len(corrupt))] = rng.randrange(256)
        corrupted.append(bytes(corrupt))
    for candidate in [data[:size] for size in range(len(data))] + corrupted:
        path.write_bytes(candidate)
        try:
            read_signature(path)
        except OnnxFormatError as exc:
            assert str(path) in str(exc)


def test_overlong_varint(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(bytes([0x08] + [0x80] * 10 + [0x01]))
    _assert_rejected(path, "varint longer than")


def test_wrong_wire_type_for_known_field(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(bytes([0x0A, 0x01, 0x00]))  # ir_version sent as a length-delimited field
    _assert_rejected(path, "field 1 of ModelProto is length-delimited")


def test_missing_graph(tmp_path: Path) -> None:
    model = _identity_model(TensorProto.FLOAT, [1])
    model.ClearField("graph")
    path = _save(model, tmp_path / "m.onnx")
    _assert_rejected(path, "no graph")


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_signature(tmp_path / "absent.onnx")


# --------------------------------------------------------------------------- the module itself


def test_reader_imports_only_the_standard_library() -> None:
    tree = ast.parse(Path(onnx_info.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}
