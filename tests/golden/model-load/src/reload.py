"""Swap the model of a running service without downtime: ``python -m src.reload [MODEL]``.

``make reload MODEL=path/to/new.onnx`` runs this. It asks the service started by run.sh on PORT
(its SERVICE_STATE_DIR) to serve MODEL, signals its master (SIGHUP), and waits for the outcome:
exit status 0 when the new model serves, 1 when it was refused (the old one goes on serving, and
the reason is printed, logged and shown by /metadata). Without MODEL the current files are
loaded again, e.g. after the model file was replaced in place.

With ``--uri`` (``make reload URI=... SHA256=...``) the model is first fetched by the project's
loader (``python -m src.loader``: the same stores, bounds and sha256 check as in a pod) into
``model-<sha256 prefix>.onnx`` beside the served one (or in ``--into``), then swapped in with
MODEL_URI and MODEL_SHA256, which /metadata then shows.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from src.app.config import SERVICE_NAME, Settings
from src.loader import main as load_model
from src.loader import redact
from src.release.serve import swap_timeout
from src.release.state import StateDir

DEFAULT_PORT = 8000
POLL_SECONDS = 0.2


def parser() -> argparse.ArgumentParser:
    """The command line."""
    cli = argparse.ArgumentParser(prog="python -m src.reload", description=__doc__)
    cli.add_argument("model", nargs="?", type=Path, help="the new ONNX model file")
    cli.add_argument("--labels", type=Path, help="its label file, when the labels change too")
    cli.add_argument("--sha256", help="the sha256 the model must have (MODEL_SHA256)")
    cli.add_argument("--port", type=int, help="the service port (default: PORT, else 8000)")
    cli.add_argument("--uri", help="fetch the model from this URI first (needs --sha256)")
    cli.add_argument("--into", type=Path, help="the folder to fetch into (default: the model's)")
    return cli


def state_dir(port: int | None) -> StateDir:
    """The folder run.sh made for the service on ``port``."""
    found = StateDir.from_env()
    if found is not None:
        return found
    port = port or int(os.environ.get("PORT", DEFAULT_PORT))
    temporary = os.environ.get("TMPDIR", "/tmp")
    return StateDir(Path(temporary) / f"{SERVICE_NAME}-{port}.state")


def request_of(args: argparse.Namespace) -> dict[str, str]:
    """The environment the new workers get; SystemExit naming the file that is not there."""
    request: dict[str, str] = {}
    if args.uri:
        if not args.sha256:
            sys.exit("--uri needs --sha256: the loader checks the model it fetches against it")
        folder = args.into or Settings.from_env().model_filepath.parent
        args.model = fetched(args.uri, args.sha256, folder)
        request["MODEL_URI"] = args.uri
    for key, path in (("MODEL_FILEPATH", args.model), ("LABEL_FILEPATH", args.labels)):
        if path is not None:
            if not path.is_file():
                sys.exit(f"{path}: no such file")
            request[key] = str(path.resolve())
    if args.sha256:
        request["MODEL_SHA256"] = args.sha256
    return request


def fetched(uri: str, sha256: str, folder: Path) -> Path:
    """The model at ``uri``, fetched and verified into ``folder``; SystemExit if not."""
    target = folder / f"model-{sha256[:12]}.onnx"
    status = load_model(["--uri", uri, "--sha256", sha256, "--output", str(target)])
    if status != 0:
        sys.exit(f"the loader did not fetch {redact(uri)} (exit status {status})")
    return target


def master_pid(state: StateDir) -> int:
    """The pid of the running service's master; SystemExit when none runs."""
    try:
        pid = int(state.pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        sys.exit(f"no service is running with its state in {state.path} (start it: make run)")
    return pid


def wait_for_outcome(state: StateDir, since: float) -> dict[str, object]:
    """status.json once the master wrote a newer one; SystemExit when it takes too long."""
    deadline = time.monotonic() + 2 * swap_timeout()
    while time.monotonic() < deadline:
        status = state.read_status()
        if status is not None and float(str(status.get("at", 0))) >= since:
            return status
        time.sleep(POLL_SECONDS)
    sys.exit(f"no outcome in {state.status_file} after {2 * swap_timeout():.0f} s")


def main(argv: list[str] | None = None) -> int:
    """Request the swap, signal the master, print the outcome."""
    args = parser().parse_args(argv)
    state = state_dir(args.port)
    pid = master_pid(state)
    since = time.time()
    state.write_request(request_of(args))
    os.kill(pid, signal.SIGHUP)
    status = wait_for_outcome(state, since)
    print(json.dumps(status, indent=2))
    return 0 if status.get("outcome") == "swapped" else 1


if __name__ == "__main__":
    sys.exit(main())
