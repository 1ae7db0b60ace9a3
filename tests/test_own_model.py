"""Bring your own model: the signature is read from the ONNX file, and the service works with it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import own_tests
from onnx import TensorProto, helper, numpy_helper

from builder_core import build
from builder_core.errors import ModelFileError, VariablesError


def write_model(
    folder: Path, features: int = 3, classes: int = 2, row_shape: tuple[int, ...] = ()
) -> tuple[Path, Path]:
    """A small linear softmax classifier made with onnx itself, and its labels.

    Its rows are ``features`` numbers, or nested lists of ``row_shape`` (flattened in the graph).
    """
    row_shape = row_shape or (features,)
    features = int(np.prod(row_shape))
    rng = np.random.default_rng(7)
    weights = numpy_helper.from_array(rng.normal(size=(features, classes)).astype(np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["measurements"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["scores"], axis=1),
        ],
        "churn",
        [helper.make_tensor_value_info("measurements", TensorProto.FLOAT, ["batch", *row_shape])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", classes])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    model_path, label_path = folder / "churn.onnx", folder / "churn_labels.json"
    onnx.save(model, model_path)
    label_path.write_text(json.dumps([f"class-{index}" for index in range(classes)]))
    return model_path, label_path


def test_the_signature_comes_from_the_model(tmp_path: Path) -> None:
    model, labels = write_model(tmp_path)
    result = build(name="churn", model=model, labels=labels, output_dir=tmp_path / "out")
    assert result.variables.data_structure == (1, 3)
    assert result.variables.prediction_structure == (1, 2)
    config = (result.target / "src" / "app" / "config.py").read_text()
    assert 'OUTPUT_NAME = "scores"' in config
    assert (result.target / "models" / "churn.onnx").read_bytes() == model.read_bytes()
    assert (result.target / "models" / "churn_labels.json").is_file()


def test_labels_must_match_the_number_of_classes(tmp_path: Path) -> None:
    model, labels = write_model(tmp_path)
    labels.write_text(json.dumps(["a", "b", "c"]))
    with pytest.raises(
        ModelFileError, match="3 labels, but the model's scores 'scores' have 2 classes"
    ):
        build(name="churn", model=model, labels=labels, output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_vars_that_contradict_the_model_are_refused(tmp_path: Path) -> None:
    model, labels = write_model(tmp_path)
    variables = tmp_path / "vars.yaml"
    variables.write_text("name: churn\ndata_structure: (1,4)\n")
    with pytest.raises(
        VariablesError, match=r"vars\.yaml: data_structure: \(1, 4\) does not match"
    ):
        build(variable_file=variables, model=model, labels=labels, output_dir=tmp_path)


ZOO = Path(__file__).resolve().parent.parent / "sample_models" / "zoo"


def test_labels_are_optional_and_read_from_the_model(tmp_path: Path) -> None:
    variables = ZOO / "multiclass" / "vars.yaml"
    model = ZOO / "multiclass" / "model.onnx"
    target = build(name="iris", model=model, variable_file=variables, output_dir=tmp_path).target
    labels = json.loads((target / "models" / "label.json").read_text())
    assert labels == {"0": "setosa", "1": "versicolor", "2": "virginica"}


def test_the_task_variable_chooses_raw_outputs(tmp_path: Path) -> None:
    variables = tmp_path / "vars.yaml"
    variables.write_text((ZOO / "binary" / "vars.yaml").read_text() + "task: raw\n")
    model = ZOO / "binary" / "model.onnx"
    target = build(name="raw", model=model, variable_file=variables, output_dir=tmp_path).target
    assert 'TASK = "raw"' in (target / "src" / "app" / "config.py").read_text()
    assert not (target / "models" / "label.json").exists()


def test_a_pattern_refuses_a_task_it_does_not_serve(tmp_path: Path) -> None:
    model = ZOO / "regressor" / "model.onnx"
    with pytest.raises(ModelFileError, match="data-cache pattern serves classification models"):
        build(name="reg", pattern="data-cache", model=model, output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_string_inputs_need_a_sample(tmp_path: Path) -> None:
    model = ZOO / "tabular" / "model.onnx"
    with pytest.raises(VariablesError, match=r"data_sample: required .*\(city\)"):
        build(name="tab", model=model, output_dir=tmp_path / "out")


def test_a_record_sample_must_name_every_input(tmp_path: Path) -> None:
    variables = tmp_path / "vars.yaml"
    variables.write_text('data_sample: [{"age": 1.0, "city": "seoul"}]\n')
    model = ZOO / "tabular" / "model.onnx"
    with pytest.raises(VariablesError, match=r"data_sample\[0\]: missing income"):
        build(name="tab", model=model, variable_file=variables, output_dir=tmp_path / "out")


def test_a_file_that_is_not_onnx_is_refused(tmp_path: Path) -> None:
    _, labels = write_model(tmp_path)
    bogus = tmp_path / "bogus.onnx"
    bogus.write_text("not a model")
    with pytest.raises(ModelFileError, match=r"bogus\.onnx"):
        build(name="x", model=bogus, labels=labels, output_dir=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("row_shape", [(5,), (2, 3)], ids=["rows", "nested-rows"])
def test_the_generated_service_passes_its_own_tests(
    tmp_path: Path, service_python: Callable[[Path], Path], row_shape: tuple[int, ...]
) -> None:
    model, labels = write_model(tmp_path, classes=4, row_shape=row_shape)
    target = build(name="churn", model=model, labels=labels, output_dir=tmp_path / "out").target
    result = own_tests(service_python(target), target)
    assert result.returncode == 0, result.stdout + result.stderr
