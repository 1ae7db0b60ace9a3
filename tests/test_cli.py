"""The command line as a user runs it: from any folder, exit codes, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_builder


def test_generates_from_any_working_directory(tmp_path: Path) -> None:
    result = run_builder("--name", "fraud-scorer", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "fraud-scorer" / "run.sh").is_file()
    assert "fraud-scorer" in result.stdout


def test_local_vars_yaml_is_used_when_present(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "vars.yaml").read_text())
    (tmp_path / "vars.yaml").write_text(yaml.safe_dump({**data, "name": "local-name"}))
    result = run_builder(cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "local-name").is_dir()


@pytest.mark.parametrize("flag", ["--variable-file", "--variable_file"])
def test_both_spellings_of_the_variable_file_option(tmp_path: Path, flag: str) -> None:
    data = yaml.safe_load((REPO / "vars.yaml").read_text())
    path = tmp_path / "my-vars.yaml"
    path.write_text(yaml.safe_dump({**data, "name": "from-file"}))
    result = run_builder(flag, str(path), "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "from-file").is_dir()


@pytest.mark.parametrize("flag", ["--correspond-file-path", "--correspond_file_path"])
def test_both_spellings_of_the_mapping_option(tmp_path: Path, flag: str) -> None:
    mapping = tmp_path / "map.yaml"
    mapping.write_text("Dockerfile.j2: '{}/Dockerfile'\nrun.sh.j2: run.sh\n")
    result = run_builder(flag, str(mapping), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "iris-classifier" / "Dockerfile").is_file()
    assert not (tmp_path / "iris-classifier" / "Makefile").exists()


def test_list_patterns_gives_one_line_each(tmp_path: Path) -> None:
    result = run_builder("--list-patterns", cwd=tmp_path)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert any(line.startswith("web-single ") and "FastAPI" in line for line in lines)


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path) -> None:
    result = run_builder("--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "run.sh" in result.stdout
    assert "nothing written" in result.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--name", "Bad_Name"], "name: 'Bad_Name' is not a DNS-1123 label"),
        (["--pattern", "nope"], "unknown pattern 'nope'"),
        (["--variable-file", "missing.yaml"], "missing.yaml: variable file not found"),
        (["--model", "missing.onnx", "--labels", "l.json"], "missing.onnx: cannot read the model"),
        (["--no-such-option"], "No such option"),
    ],
)
def test_invalid_input_exits_2_with_one_line(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    result = run_builder(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_bad_vars_name_the_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "vars.yaml").write_text("name: ok\nworkers: many\n")
    result = run_builder(cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "vars.yaml: workers:" in result.stderr


def test_an_existing_folder_exits_2_and_force_replaces_it(tmp_path: Path) -> None:
    assert run_builder(cwd=tmp_path).returncode == 0
    again = run_builder(cwd=tmp_path)
    assert again.returncode == 2
    assert "--force" in again.stderr
    assert run_builder("--force", cwd=tmp_path).returncode == 0


def test_a_write_failure_exits_1_without_traceback(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder is needed")
    result = run_builder("--output-dir", str(blocker / "out"), cwd=tmp_path)
    assert result.returncode == 1
    assert "cannot write" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_model_given_by_a_relative_path(tmp_path: Path) -> None:
    (tmp_path / "churn.onnx").write_bytes((REPO / "sample_models/iris/model.onnx").read_bytes())
    (tmp_path / "labels.json").write_text('["a", "b", "c"]')
    result = run_builder(
        "--name", "churn", "--model", "churn.onnx", "--labels", "labels.json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "churn" / "models" / "churn.onnx").is_file()


def test_a_local_vars_yaml_that_does_not_fit_says_where_it_came_from(tmp_path: Path) -> None:
    (tmp_path / "vars.yaml").write_text((REPO / "vars.yaml").read_text())
    result = run_builder("--pattern", "data-cache", cwd=tmp_path)
    assert result.returncode == 2
    assert "read from ./vars.yaml in the current folder" in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_explain_shows_where_every_file_comes_from(tmp_path: Path) -> None:
    result = run_builder("explain", "data-cache", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "extended  .dockerignore  blocks: header, sent" in lines
    assert "extended  requirements.txt  blocks: extra_requirements (set)" in lines
    assert (
        "extended  docker-compose.yml  blocks: "
        "title, comment, api_environment, api_mounts, services" in lines
    )
    assert any(
        line.startswith("replaced  tests/test_api.py  why: tests requests by data ID")
        for line in lines
    )
    assert "omitted   src/app/fast.py" in lines
    assert "common    src/app/v2.py" in lines
    assert any(
        line.startswith("added     src/app/items.py  <- patterns/data-cache/") for line in lines
    )
    assert lines[-1].endswith("omitted")
    assert list(tmp_path.iterdir()) == []
    unknown = run_builder("explain", "nope", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "unknown pattern 'nope'" in unknown.stderr
