#!/usr/bin/env python3
"""Generate the Python modules of the services' gRPC protocol from its ``.proto`` file.

``template/src/protocol/grpc_predict_v2.proto`` is the Open Inference Protocol's gRPC service;
the ``_pb2`` (messages), ``_pb2.pyi`` (their types) and ``_pb2_grpc`` (service) modules beside it
are what protoc (grpcio-tools, pinned in the test extras) makes of it, committed so that neither
builder nor a generated service needs protoc. Run this after changing the ``.proto`` or the
grpcio-tools pin; ``--check`` only says whether the committed modules are what it would write.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "template"
PROTO = Path("src/protocol/grpc_predict_v2.proto")
SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def compile_into(root: Path) -> list[Path]:
    """Write the generated modules under ``root`` (at the proto's path); their paths."""
    (root / PROTO.parent).mkdir(parents=True, exist_ok=True)
    arguments = [
        "grpc_tools.protoc",
        f"--proto_path={TEMPLATE}",
        f"--python_out={root}",
        f"--pyi_out={root}",
        f"--grpc_python_out={root}",
        str(TEMPLATE / PROTO),
    ]
    if protoc.main(arguments) != 0:
        raise SystemExit(f"protoc failed on {TEMPLATE / PROTO}")
    stem = PROTO.with_suffix("")
    return [root / f"{stem}{suffix}" for suffix in SUFFIXES]


def stale() -> list[str]:
    """The committed modules that differ from what protoc writes now (missing ones too)."""
    with tempfile.TemporaryDirectory() as scratch:
        fresh = compile_into(Path(scratch))
        return [
            str(path.relative_to(scratch))
            for path in fresh
            if not (TEMPLATE / path.relative_to(scratch)).is_file()
            or (TEMPLATE / path.relative_to(scratch)).read_bytes() != path.read_bytes()
        ]


def main() -> None:
    """Regenerate the modules, or with --check exit 1 if the committed ones are stale."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    if parser.parse_args().check:
        outdated = stale()
        for name in outdated:
            print(f"stale: template/{name} (run scripts/compile_protos.py)", file=sys.stderr)
        raise SystemExit(1 if outdated else 0)
    for path in compile_into(TEMPLATE):
        print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
