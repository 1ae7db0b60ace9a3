"""Policy scan of every generated Dockerfile and manifest set with checkov, in one call.

Zero failed checks, except those listed with their reasons in .checkov.yaml at the repository root.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, UV

from builder_core import build, pattern_names

pytestmark = pytest.mark.slow

CHECKOV = "checkov==3.3.30"


@pytest.fixture(scope="module")
def checkov(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """checkov in a virtualenv of its own (it brings ~300 MB of dependencies)."""
    assert UV is not None
    venv = tmp_path_factory.mktemp("checkov") / "venv"
    subprocess.run([UV, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    subprocess.run(
        [UV, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), CHECKOV], check=True
    )
    return venv / "bin" / "checkov"


def test_every_pattern_passes_checkov(checkov: Path, tmp_path: Path) -> None:
    for pattern in pattern_names():
        project = build(pattern=pattern, name=pattern, output_dir=tmp_path).target
        _write_rendered_canary(project, tmp_path / f"{pattern}-canary-rendered.yaml")
    result = subprocess.run(
        [
            str(checkov),
            "--directory",
            str(tmp_path),
            "--framework",
            "dockerfile,kubernetes",
            "--skip-download",
            "--compact",
            "--quiet",
            "--config-file",
            str(REPO / ".checkov.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_skipped_check_gives_its_reason() -> None:
    lines = (REPO / ".checkov.yaml").read_text().splitlines()
    for index, line in enumerate(lines):
        if line.strip().startswith("- CKV"):
            assert lines[index - 1].strip().startswith("#"), f"{line.strip()} has no reason"


def _write_rendered_canary(project: Path, target: Path) -> None:
    """The canary overlay as kustomize applies it (candidate.yaml patched in), for checkov."""
    overlay = project / "manifests" / "overlays" / "canary"
    # Without kubectl the overlay's own files are still scanned; tests/test_canary.py says why
    # it could not render them.
    if not overlay.is_dir() or shutil.which("kubectl") is None:
        return
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=True
    )
    target.write_text(rendered.stdout)
