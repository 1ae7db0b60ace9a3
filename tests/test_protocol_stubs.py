"""The services' gRPC modules are exactly what protoc makes of the protocol's ``.proto``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_committed_grpc_modules_are_what_protoc_writes() -> None:
    checked = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "compile_protos.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
