"""Hostile or broken YAML input: refused in one line with exit status 2, quickly, leaving nothing.

Each case once cost a RecursionError, a ValueError traceback, minutes of parsing or gigabytes of
memory, or was accepted silently (duplicate keys). The subprocess timeout is a guard against
regressions, not a benchmark: a refusal takes well under a second.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from builder_core import safe_yaml
from builder_core.errors import VariablesError
from builder_core.variables import read_mapping_file

GUARD_SECONDS = 10
FIFTY_MB = 50 * 1024 * 1024


def run_quickly(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m builder`` as a user runs it, killed (failing the test) after GUARD_SECONDS."""
    return subprocess.run(
        [sys.executable, "-m", "builder", *args],
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=GUARD_SECONDS,
        check=False,
    )


def assert_refused(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit status 2 and exactly one line on stderr holding every fragment."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def billion_laughs(path: Path) -> None:
    """Nine levels of ten aliases each: a billion strings once anything expands them."""
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for alias, anchor in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{anchor}: &{anchor} [{', '.join([f'*{alias}'] * 10)}]")
    path.write_text("\n".join(lines) + "\n")


def fifty_mb_of_keys(path: Path) -> None:
    block = "".join(f"key_{index}: {index}\n" for index in range(100_000))
    with path.open("w", encoding="utf-8") as stream:
        for copy in range(FIFTY_MB // len(block) + 1):
            stream.write(block.replace("key_", f"key{copy}_"))


HOSTILE_VARIABLES: dict[str, tuple[Callable[[Path], object], tuple[str, ...]]] = {
    "100000-nested-brackets": (
        lambda path: path.write_text("[" * 100_000),
        ("vars.yaml (line 1): invalid YAML",),
    ),
    "5000-digit-port": (
        lambda path: path.write_text("name: svc\nport: " + "1" * 5000 + "\n"),
        ("vars.yaml (line 2): invalid YAML", "an integer of 5000 characters"),
    ),
    "duplicate-key": (
        lambda path: path.write_text("name: first\nport: 8000\nname: second\n"),
        ("vars.yaml (line 3): invalid YAML", "duplicate key 'name' (first on line 1)"),
    ),
    "50-MB-string": (
        lambda path: path.write_text("name: " + "a" * FIFTY_MB + "\n"),
        ("vars.yaml: variable file is larger than 1 MiB",),
    ),
    "50-MB-of-keys": (
        fifty_mb_of_keys,
        ("vars.yaml: variable file is larger than 1 MiB",),
    ),
    "nul-byte": (
        lambda path: path.write_bytes(b"name: svc\ndescription: a\x00b\n"),
        ("vars.yaml (line 2): invalid YAML", "#x0000"),
    ),
    "billion-laughs": (
        billion_laughs,
        ("vars.yaml (line 1): invalid YAML", "anchors and aliases are not allowed (found &a)"),
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_VARIABLES))
def test_a_hostile_variable_file_is_refused_in_one_line(tmp_path: Path, case: str) -> None:
    write, fragments = HOSTILE_VARIABLES[case]
    path = tmp_path / "vars.yaml"
    write(path)
    result = run_quickly("--variable-file", str(path), cwd=tmp_path)
    assert_refused(result, str(path.parent / fragments[0]), *fragments[1:])
    assert list(tmp_path.iterdir()) == [path]


def test_a_hostile_correspond_file_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    path.write_text("Dockerfile.j2: Dockerfile\nrun.sh.j2: run.sh\nDockerfile.j2: Dockerfile2\n")
    result = run_quickly("--correspond-file-path", str(path), cwd=tmp_path)
    assert_refused(result, f"{path} (line 3): invalid YAML", "duplicate key 'Dockerfile.j2'")
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("command", ["upgrade", "check"])
def test_a_hostile_answers_file_is_refused_too(tmp_path: Path, command: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    answers = project / ".builder-answers.yml"
    answers.write_text("[" * 100_000)
    result = run_quickly(command, str(project), cwd=tmp_path)
    assert_refused(result, f"{answers} (line 1): invalid YAML")
    assert list(project.iterdir()) == [answers]


def test_an_output_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    result = run_quickly("--output-dir", str(blocker), cwd=tmp_path)
    assert_refused(result, f"--output-dir {blocker}: not a folder")
    assert list(tmp_path.iterdir()) == [blocker]
    assert blocker.read_text() == "a file, not a folder"


# The loader itself, with libyaml (when PyYAML has it) and with PyYAML's pure-Python parser.


@pytest.fixture(params=["default", "pure-python"])
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.param == "pure-python":
        monkeypatch.setattr(safe_yaml, "_LOADER", safe_yaml._PythonLoader)


def refusal(text: str) -> tuple[int | None, str]:
    with pytest.raises(yaml.YAMLError) as caught:
        safe_yaml.load(text)
    return safe_yaml.describe(caught.value)


@pytest.mark.usefixtures("loader")
def test_the_repository_vars_yaml_still_loads() -> None:
    path = REPO / "vars.yaml"
    assert read_mapping_file(path, "variable file") == yaml.safe_load(path.read_text())


@pytest.mark.usefixtures("loader")
def test_nesting_is_limited_not_left_to_the_recursion_limit() -> None:
    deepest: list[object] = []
    for _ in range(safe_yaml.MAX_DEPTH - 1):
        deepest = [deepest]
    depth = safe_yaml.MAX_DEPTH
    assert safe_yaml.load("[" * depth + "]" * depth) == deepest
    # Line n opens level n (the top mapping is level 1): line 51 is one too deep.
    line, problem = refusal("x:\n" + "".join(" " * level + "- \n" for level in range(1, 80)))
    assert (line, problem) == (51, "nested more than 50 levels deep")


@pytest.mark.usefixtures("loader")
def test_the_number_of_values_is_limited() -> None:
    assert "more than 50000 values" in refusal("[" + "1, " * safe_yaml.MAX_NODES + "]")[1]


@pytest.mark.usefixtures("loader")
def test_duplicates_are_compared_as_values_and_merge_keys_still_work() -> None:
    assert refusal("{1: a, 0x1: b}") == (1, "duplicate key 1 (first on line 1)")
    assert refusal("outer:\n  a: 1\n  b: 2\n  a: 3\n") == (4, "duplicate key 'a' (first on line 2)")
    assert safe_yaml.load("a: {<<: {b: 1, c: 2}, b: 3}") == {"a": {"b": 3, "c": 2}}


@pytest.mark.usefixtures("loader")
def test_a_value_python_cannot_build_names_its_line() -> None:
    assert refusal("name: svc\nreleased: 2024-02-30\n") == (
        2,
        "cannot read this value: day is out of range for month",
    )


@pytest.mark.usefixtures("loader")
def test_an_alias_alone_is_refused() -> None:
    assert "anchors and aliases are not allowed (found *a)" in refusal("a: *a\n")[1]


def test_a_file_at_the_limit_is_read_and_one_byte_more_is_not(tmp_path: Path) -> None:
    path = tmp_path / "vars.yaml"
    path.write_text("# " + "x" * (safe_yaml.MAX_FILE_BYTES - 3) + "\n")
    assert read_mapping_file(path, "variable file") == {}
    path.write_text("# " + "x" * (safe_yaml.MAX_FILE_BYTES - 2) + "\n")
    with pytest.raises(VariablesError, match=r"vars\.yaml: variable file is larger than 1 MiB"):
        read_mapping_file(path, "variable file")


def test_an_upgrade_setting_nested_too_deep_is_refused(tmp_path: Path) -> None:
    assert run_quickly("--output-dir", str(tmp_path), cwd=tmp_path).returncode == 0
    deep = "[" * 10_000 + "]" * 10_000
    result = run_quickly(
        "upgrade", str(tmp_path / "iris-classifier"), "--set", f"data_sample={deep}", cwd=tmp_path
    )
    assert_refused(result, "--set data_sample: invalid YAML")


def test_a_flood_of_unknown_keys_names_the_first_few(tmp_path: Path) -> None:
    variables = tmp_path / "vars.yaml"
    variables.write_text("".join(f"unknown_{index}: 1\n" for index in range(20_000)))
    result = run_quickly("--variable-file", str(variables), cwd=tmp_path)
    assert_refused(result, "unknown_0: unknown key", "more problems")
    assert len(result.stderr) < 2_000


def test_a_model_with_a_large_input_keeps_a_small_answers_file(tmp_path: Path) -> None:
    """The zeros derived as its sample input are not recorded: check and upgrade can read it."""
    from onnx import TensorProto, helper, save

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 3, 224, 224])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, 3])
    mean = helper.make_node("ReduceMean", ["image"], ["scores"], axes=[2, 3], keepdims=0)
    model = helper.make_model(
        helper.make_graph([mean], "colours", [image], [scores]),
        opset_imports=[helper.make_opsetid("", 13)],
    )
    model.ir_version = 8
    save(model, str(tmp_path / "colours.onnx"))
    (tmp_path / "labels.json").write_text('["red", "green", "blue"]')
    made = run_quickly(
        "--name", "colours", "--model", "colours.onnx", "--labels", "labels.json", cwd=tmp_path
    )
    assert made.returncode == 0, made.stderr
    answers = tmp_path / "colours" / ".builder-answers.yml"
    assert answers.stat().st_size < 4096
    assert "data_sample" not in yaml.safe_load(answers.read_text())["variables"]
    checked = run_quickly("check", str(tmp_path / "colours"), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
