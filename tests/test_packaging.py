"""What a user installs: `pip install .` (not editable) gives a working command anywhere."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, UV

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with builder installed from a built wheel of this checkout."""
    assert UV is not None
    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run([UV, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    subprocess.run(
        [UV, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), str(REPO)],
        check=True,
    )
    return venv


def test_the_builder_command_works_from_any_folder(installed: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(installed / "bin" / "builder"), "--name", "fraud-scorer"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "fraud-scorer" / "models" / "iris_svc.onnx").is_file()


def test_python_dash_m_builder_works_and_uses_packaged_data(
    installed: Path, tmp_path: Path
) -> None:
    python = str(installed / "bin" / "python")
    result = subprocess.run(
        [python, "-m", "builder", "--name", "svc", "--list-patterns"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "web-single" in result.stdout
    where = subprocess.run(
        [python, "-c", "from builder_core.resources import data_root; print(data_root())"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(installed)), where


def test_the_default_vars_agree_with_the_training_reference() -> None:
    # vars.yaml carries the scores scikit-learn gave the sample; the training script wrote them.
    variables = yaml.safe_load((REPO / "vars.yaml").read_text())
    reference = json.loads((REPO / "sample_models" / "iris" / "reference.json").read_text())
    assert variables["data_sample"] == reference["data_sample"]
    assert [variables["prediction_sample"]] == reference["prediction_sample"]
