"""Loading and validating vars.yaml: every problem is one line naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from builder_core import build
from builder_core.errors import VariablesError
from builder_core.variables import Variables, read_mapping_file, validate_variables

REPO = Path(__file__).resolve().parent.parent


def write_vars(tmp_path: Path, **changes: object) -> Path:
    """The default vars.yaml with ``changes`` applied (a value of ``...`` removes the key)."""
    data = yaml.safe_load((REPO / "vars.yaml").read_text())
    for key, value in changes.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    path = tmp_path / "vars.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [("(1,4)", (1, 4)), ("(1, 4)", (1, 4)), ("[None, 4]", (None, 4)), ("(-1,4)", (None, 4))],
)
def test_the_books_shape_strings_are_accepted(text: str, expected: tuple[int | None, ...]) -> None:
    assert validate_variables({"name": "a", "data_structure": text}, "v").data_structure == expected


def test_shapes_as_yaml_lists_are_accepted() -> None:
    assert validate_variables({"name": "a", "data_structure": [1, 4]}, "v").data_structure == (1, 4)


@pytest.mark.parametrize("text", ["1,4", "(1,x)", "(0,4)", "()", "(1.5,4)", "[true]"])
def test_bad_shapes_name_the_key(text: str) -> None:
    with pytest.raises(VariablesError, match=r"^vars\.yaml: data_structure"):
        validate_variables({"name": "a", "data_structure": yaml.safe_load(text)}, "vars.yaml")


@pytest.mark.parametrize("name", ["Iris", "iris_svc", "-iris", "iris-", "a" * 64, "iris.svc", ""])
def test_names_must_be_dns_labels(name: str) -> None:
    with pytest.raises(VariablesError, match=r"name: .*DNS-1123"):
        validate_variables({"name": name}, "vars.yaml")


def test_unknown_keys_are_rejected_by_name() -> None:
    with pytest.raises(VariablesError, match=r"^v\.yaml: modle_file_name: unknown key"):
        validate_variables({"name": "a", "modle_file_name": "x.onnx"}, "v.yaml")


def test_a_bad_dtype_is_rejected_by_name() -> None:
    with pytest.raises(VariablesError, match="data_type: Input should be 'float16'"):
        validate_variables({"name": "a", "data_type": "float33"}, "v.yaml")


def test_every_problem_is_reported_on_one_line() -> None:
    with pytest.raises(VariablesError) as caught:
        validate_variables({"name": "A", "port": 80, "bogus": 1}, "v.yaml")
    message = str(caught.value)
    assert "\n" not in message
    for key in ("name:", "port:", "bogus:"):
        assert key in message


def test_replica_bounds_must_be_ordered() -> None:
    with pytest.raises(VariablesError, match="max_replicas"):
        validate_variables({"name": "a", "min_replicas": 5, "max_replicas": 2}, "v.yaml")


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "vars.yaml"
    path.write_text("name: a\nport: [8000\n")
    with pytest.raises(VariablesError, match=rf"^{path} \(line \d+\): invalid YAML"):
        read_mapping_file(path, "variable file")


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(VariablesError, match=r"nope\.yaml: variable file not found"):
        read_mapping_file(tmp_path / "nope.yaml", "variable file")


def test_a_list_at_the_top_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "vars.yaml"
    path.write_text("- name\n")
    with pytest.raises(VariablesError, match="expected a mapping"):
        read_mapping_file(path, "variable file")


def test_image_defaults_to_the_name_and_tag() -> None:
    variables = Variables(name="fraud-scorer")
    assert variables.image == "fraud-scorer:0.1.0"
    custom = Variables(
        name="x", image_repository="registry.example.com:5000/team/x", image_tag="v2"
    )
    assert custom.image == "registry.example.com:5000/team/x:v2"


# Checked against the model: these need the sample model, so they go through build().


def test_a_shape_that_does_not_match_the_model_is_refused(tmp_path: Path) -> None:
    path = write_vars(tmp_path, data_structure="(1,5)")
    with pytest.raises(
        VariablesError, match=r"data_structure: \(1, 5\) does not match .*\(None, 4\)"
    ):
        build(variable_file=path, output_dir=tmp_path, dry_run=True)


def test_a_dtype_that_does_not_match_the_model_is_refused(tmp_path: Path) -> None:
    path = write_vars(tmp_path, data_type="float64")
    with pytest.raises(VariablesError, match="data_type: float64 does not match"):
        build(variable_file=path, output_dir=tmp_path, dry_run=True)


def test_a_sample_of_the_wrong_width_is_refused(tmp_path: Path) -> None:
    path = write_vars(tmp_path, data_sample=[[1.0, 2.0, 3.0]])
    with pytest.raises(VariablesError, match=r"data_sample\[0\]: expected 4 values, got 3"):
        build(variable_file=path, output_dir=tmp_path, dry_run=True)


def test_model_keys_left_out_are_read_from_the_model(tmp_path: Path) -> None:
    keys = ("data_type", "data_structure", "data_sample", "prediction_type", "prediction_structure")
    path = write_vars(tmp_path, **dict.fromkeys(keys, ...), prediction_sample=...)
    variables = build(variable_file=path, output_dir=tmp_path, dry_run=True).variables
    assert variables.data_type == "float32"
    assert variables.data_structure == (1, 4)
    assert variables.prediction_structure == (1, 3)
    assert variables.data_sample == [[0.0, 0.0, 0.0, 0.0]]


def test_the_command_line_name_wins_over_the_file(tmp_path: Path) -> None:
    result = build(name="fraud-scorer", output_dir=tmp_path, dry_run=True)
    assert result.variables.name == "fraud-scorer"
    assert result.target == tmp_path / "fraud-scorer"


@pytest.mark.parametrize(
    ("key", "value"),
    [("batch_max_size", -1), ("batch_max_size", 5000), ("batch_max_delay_ms", 0)],
)
def test_batching_limits_out_of_range_name_the_key(key: str, value: int) -> None:
    with pytest.raises(VariablesError, match=rf"^v\.yaml: {key}"):
        validate_variables({"name": "a", key: value}, "v.yaml")


def test_batching_variables_become_the_services_defaults(tmp_path: Path) -> None:
    target = build(
        variable_file=write_vars(tmp_path, batch_max_size=32, batch_max_delay_ms=2.5),
        output_dir=tmp_path / "out",
    ).target
    config = (target / "src" / "app" / "config.py").read_text()
    assert 'batch_max_size=_zero_or_positive(env, "BATCH_MAX_SIZE", 32, 4096)' in config
    assert 'batch_max_delay_ms=_positive_float(env, "BATCH_MAX_DELAY_MS", 2.5)' in config


@pytest.mark.parametrize(
    ("value", "message"),
    [(80, "0 \\(off\\) or 1024 to 65535"), (70000, "less than or equal"), (8000, "both 8000")],
)
def test_a_grpc_port_the_service_cannot_use_is_refused(value: int, message: str) -> None:
    with pytest.raises(VariablesError, match=rf"grpc_port.*{message}|{message}.*grpc_port"):
        validate_variables({"name": "a", "port": 8000, "grpc_port": value}, "v.yaml")


def test_the_grpc_port_reaches_run_sh_compose_and_the_manifests(tmp_path: Path) -> None:
    target = build(
        variable_file=write_vars(tmp_path, grpc_port=9123), output_dir=tmp_path / "out"
    ).target
    assert 'GRPC_PORT="${GRPC_PORT:-9123}"' in (target / "run.sh").read_text()
    compose = yaml.safe_load((target / "docker-compose.yml").read_text())["services"]["api"]
    assert "9123:9123" in compose["ports"]
    deployment = yaml.safe_load((target / "manifests" / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "grpc", "containerPort": 9123, "protocol": "TCP"} in container["ports"]
    service = yaml.safe_load((target / "manifests" / "service.yaml").read_text())
    assert [port["port"] for port in service["spec"]["ports"]] == [8000, 9123]
    policy = yaml.safe_load((target / "manifests" / "networkpolicy.yaml").read_text())
    assert {"port": "grpc", "protocol": "TCP"} in policy["spec"]["ingress"][0]["ports"]


def test_grpc_port_0_leaves_grpc_out(tmp_path: Path) -> None:
    target = build(
        variable_file=write_vars(tmp_path, grpc_port=0), output_dir=tmp_path / "out"
    ).target
    assert 'GRPC_PORT="${GRPC_PORT:-0}"' in (target / "run.sh").read_text()
    service = yaml.safe_load((target / "manifests" / "service.yaml").read_text())
    assert [port["name"] for port in service["spec"]["ports"]] == ["http"]
    assert "grpc" not in (target / "manifests" / "networkpolicy.yaml").read_text()
