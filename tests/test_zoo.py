"""Every kind of model a team exports the usual way is served: the zoo in ``sample_models/zoo``.

Each model (a regressor, binary and multi-class classifiers with skl2onnx's default ZipMap, a
tabular pipeline with named and string inputs, an integer-input model, a model with two outputs)
is generated as a web-single service, passes the generated project's own tests, and then runs for
real on 127.0.0.1: its answers are ONNX Runtime's own for the same rows (called directly, in the
service's virtualenv), a bad-input matrix built from its signature gets no 5xx and no 200, and
``tritonclient`` with its default options (binary tensor data both ways) gets the same numbers.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
import yaml
from conftest import REPO, own_tests
from live import Stack, call, running

from builder_core import build
from builder_core.onnx_info import read_signature
from builder_core.patterns import load_pattern

pytestmark = pytest.mark.slow

ZOO = REPO / "sample_models" / "zoo"
MODELS = sorted(folder.name for folder in ZOO.iterdir() if (folder / "model.onnx").is_file())
TASKS = {
    "binary": "classification",
    "integer": "classification",
    "multiclass": "classification",
    "regressor": "regression",
    "tabular": "classification",
    "two-outputs": "raw",
}
# Run in the service's virtualenv: every output of the model for the rows, by ONNX Runtime itself.
DIRECT = """
import json, sys
import numpy as np
import onnxruntime as ort
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
rows = json.loads(sys.argv[2])
types = {"tensor(string)": object, "tensor(float)": np.float32, "tensor(double)": np.float64,
         "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_}
feeds = {}
for arg in session.get_inputs():
    values = [row[arg.name] for row in rows] if isinstance(rows[0], dict) else rows
    feeds[arg.name] = np.asarray(values, dtype=types[arg.type]).reshape(len(rows), *arg.shape[1:])
names = [output.name for output in session.get_outputs()]
results = session.run(names, feeds)
def plain(value):
    if isinstance(value, list):
        return [list(row.values()) for row in value]
    return value.tolist()
print(json.dumps({name: plain(value) for name, value in zip(names, results)}))
"""


def test_the_zoo_is_every_kind_the_issue_names() -> None:
    assert sorted(TASKS) == MODELS


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each zoo model generated as a web-single service, with its own variables."""
    out = tmp_path_factory.mktemp("zoo")
    made = {}
    for name in MODELS:
        folder = ZOO / name
        labels = folder / "label.json"
        made[name] = build(
            name=name,
            pattern="web-single",
            model=folder / "model.onnx",
            labels=labels if labels.is_file() else None,
            variable_file=folder / "vars.yaml",
            output_dir=out / name,
        ).target
    return made


@pytest.mark.parametrize("name", MODELS)
def test_the_task_is_read_from_the_model(projects: dict[str, Path], name: str) -> None:
    answers = yaml.safe_load((projects[name] / ".builder-answers.yml").read_text())
    assert answers["variables"]["task"] == TASKS[name]
    has_labels = (projects[name] / "models" / "label.json").is_file()
    assert has_labels == (TASKS[name] == "classification")


@pytest.mark.parametrize("name", MODELS)
def test_the_generated_project_passes_its_own_tests(
    projects: dict[str, Path], service_python: Callable[[Path], Path], name: str
) -> None:
    project = projects[name]
    result = own_tests(service_python(project), project)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


# Every other pattern that takes a user's model, with the kinds that change the most code.
OTHER_PATTERNS = [
    ("sync-async", "tabular"),
    ("sync-async", "two-outputs"),
    ("model-load", "regressor"),
    ("model-in-image", "multiclass"),
    ("batch", "tabular"),
    ("batch", "regressor"),
]


@pytest.mark.parametrize(("pattern", "name"), OTHER_PATTERNS)
def test_other_patterns_serve_them_too(
    tmp_path: Path, service_python: Callable[[Path], Path], pattern: str, name: str
) -> None:
    folder = ZOO / name
    project = build(
        name=name,
        pattern=pattern,
        model=folder / "model.onnx",
        variable_file=folder / "vars.yaml",
        output_dir=tmp_path,
    ).target
    result = own_tests(service_python(project), project)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.fixture(params=MODELS)
def live(
    request: pytest.FixtureRequest,
    projects: dict[str, Path],
    service_python: Callable[[Path], Path],
    tmp_path: Path,
) -> Iterator[tuple[str, Path, Path, Stack]]:
    """A zoo model's service running on 127.0.0.1: its name, project, Python and stack."""
    name: str = request.param
    project = projects[name]
    python = service_python(project)
    with running(project, python, load_pattern("web-single").info, tmp_path) as stack:
        yield name, project, python, stack


def direct(python: Path, project: Path, rows: list[Any]) -> dict[str, Any]:
    """Every output of the project's model for ``rows``, from ONNX Runtime called directly."""
    model = next((project / "models").glob("*.onnx"))
    result = subprocess.run(
        [str(python), "-c", DIRECT, str(model), json.dumps(rows)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    outputs: dict[str, Any] = json.loads(result.stdout)
    return outputs


def reference_rows(name: str) -> list[Any]:
    rows: list[Any] = json.loads((ZOO / name / "reference.json").read_text())["inputs"]
    return rows


def test_answers_are_onnx_runtimes_own(live: tuple[str, Path, Path, Stack]) -> None:
    name, project, python, stack = live
    rows = reference_rows(name)
    expected = direct(python, project, rows)
    status, answer = call(f"{stack.base}/predict", json.dumps({"data": rows}).encode())
    assert status == 200, answer
    prediction = answer["prediction"]
    signature = read_signature(next((project / "models").glob("*.onnx")))
    if TASKS[name] == "classification":
        scores = next(o.name for o in signature.outputs if o.kind == "zipmap" or len(o.shape) == 2)
        np.testing.assert_allclose(prediction, expected[scores], rtol=1e-5, atol=1e-6)
        status, labels = call(f"{stack.base}/predict/label", json.dumps({"data": rows}).encode())
        names = list(call(f"{stack.base}/label")[1].values())
        assert labels["prediction"] == [names[int(np.argmax(row))] for row in expected[scores]]
    elif TASKS[name] == "regression":
        (values,) = expected.values()
        np.testing.assert_allclose(prediction, np.asarray(values).reshape(-1), rtol=1e-5)
        assert call(f"{stack.base}/predict/label", b'{"data": []}')[0] == 404
    else:
        assert list(prediction) == list(expected)
        for output, values in expected.items():
            np.testing.assert_allclose(prediction[output], values, rtol=1e-5)


def bad_bodies(project: Path, sample: list[Any]) -> dict[str, bytes]:
    """Requests the service must refuse, built from the model's signature and a good row."""
    signature = read_signature(next((project / "models").glob("*.onnx")))
    row = sample[0]
    bodies: dict[str, Any] = {"no rows": {"data": []}, "too many rows": {"data": [row] * 1001}}
    if isinstance(row, dict):
        bodies["unknown input"] = {"data": [{**row, "not-an-input": 1}]}
        for tensor in signature.inputs:
            others = {key: value for key, value in row.items() if key != tensor.name}
            bodies[f"{tensor.name} missing"] = {"data": [others]}
            wrong = 1.5 if tensor.dtype == "string" else "1.5"
            bodies[f"{tensor.name} mistyped"] = {"data": [{**row, tensor.name: wrong}]}
            bodies[f"{tensor.name} null"] = {"data": [{**row, tensor.name: None}]}
            if tensor.dtype == "float32":
                bodies[f"{tensor.name} oversized"] = {"data": [{**row, tensor.name: 1e39}]}
    else:
        (tensor,) = signature.inputs
        bodies["wrong width"] = {"data": [[*row, *row]]}
        bodies["mistyped"] = {"data": [["1.5", *row[1:]]]}
        bodies["null"] = {"data": [[None, *row[1:]]]}
        bodies["oversized"] = {"data": [[10**400, *row[1:]]]}
        if tensor.dtype.startswith("int"):
            bodies["not an integer"] = {"data": [[0.5, *row[1:]]]}
    encoded = {case: json.dumps(body).encode() for case, body in bodies.items()}
    # A literal JSON has no way of writing: the service's parser must refuse it.
    encoded["NaN"] = json.dumps({"data": [row]}).replace(_first_number(row), "NaN", 1).encode()
    return encoded


def _first_number(row: Any) -> str:
    values = list(row.values()) if isinstance(row, dict) else row
    number = next(value for value in values if isinstance(value, int | float))
    return json.dumps(number)


def test_bad_input_is_refused_with_a_4xx_never_a_5xx(live: tuple[str, Path, Path, Stack]) -> None:
    name, project, _python, stack = live
    sample = yaml.safe_load((ZOO / name / "vars.yaml").read_text())["data_sample"]
    answers = {
        case: call(f"{stack.base}/predict", body)[0]
        for case, body in bad_bodies(project, sample).items()
    }
    assert all(400 <= status < 500 for status in answers.values()), answers


def test_tritonclient_with_its_default_options(live: tuple[str, Path, Path, Stack]) -> None:
    name, project, python, stack = live
    rows = reference_rows(name)
    expected = direct(python, project, rows)
    client = httpclient.InferenceServerClient(stack.base.removeprefix("http://"))
    meta = client.get_model_metadata(name)
    inputs = []
    for tensor in meta["inputs"]:
        values = [row[tensor["name"]] for row in rows] if isinstance(rows[0], dict) else rows
        dtype = object if tensor["datatype"] == "BYTES" else None
        array = np.asarray(values, dtype=dtype).reshape(len(rows), *tensor["shape"][1:])
        if dtype is None:
            array = array.astype(httpclient.triton_to_np_dtype(tensor["datatype"]))
        item = httpclient.InferInput(tensor["name"], list(array.shape), tensor["datatype"])
        item.set_data_from_numpy(array)  # binary_data=True: the client's default
        inputs.append(item)
    result = client.infer(name, inputs)
    for output, values in expected.items():
        got = result.as_numpy(output)
        assert got is not None, output
        if got.dtype == np.object_:
            assert [value.decode() for value in got.reshape(-1)] == [str(v) for v in values]
        else:
            np.testing.assert_allclose(got, np.asarray(values, dtype=got.dtype), rtol=1e-5)


def test_the_projects_smoke_script_passes(live: tuple[str, Path, Path, Stack]) -> None:
    _name, project, python, stack = live
    result = subprocess.run(
        [str(python), "smoke.py", stack.base],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
