"""The committed sample models are exactly what the training script makes from scratch."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO, UV

pytestmark = pytest.mark.slow


def test_training_reproduces_the_committed_models(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    assert UV is not None
    venv = tmp_path_factory.mktemp("train") / "venv"
    python = venv / "bin" / "python"
    requirements = REPO / "scripts" / "requirements-train.txt"
    subprocess.run([UV, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    subprocess.run(
        [UV, "pip", "install", "-q", "--python", str(python), "-r", str(requirements)], check=True
    )
    out = tmp_path_factory.mktemp("trained")
    result = subprocess.run(
        [str(python), str(REPO / "scripts" / "train_sample_models.py"), "--output-dir", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    committed = REPO / "sample_models"
    for path in sorted(committed.rglob("*")):
        if path.is_file():
            fresh = out / path.relative_to(committed)
            assert fresh.read_bytes() == path.read_bytes(), f"{path.relative_to(REPO)} differs"
