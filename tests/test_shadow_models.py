"""The sample models' shadow test models are what scripts/make_shadow_models.py builds from them."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_the_committed_shadow_models_are_up_to_date() -> None:
    script = REPO / "scripts" / "make_shadow_models.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
