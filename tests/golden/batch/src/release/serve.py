"""Gunicorn, with a model swap that never leaves the service without a ready model.

run.sh starts ``python -m src.release.serve APP_URI [gunicorn options]``: the same command line
as ``gunicorn``. On SIGHUP gunicorn itself would stop the old workers at once and, when the new
ones cannot load their model, halt the whole service. Here SIGHUP instead:

1. takes the request ``python -m src.reload`` left (the new MODEL_FILEPATH, ...);
2. starts the application once in a separate process with it (:mod:`src.release.preflight`),
   and refuses the swap, old workers untouched, when that fails;
3. starts a full set of new workers, and only when every one of them has loaded and tested its
   model, sends the old ones SIGTERM: they stop taking requests and finish what they hold.

A new worker that dies or is not ready in time ends the swap the same way: the new workers go,
the old ones stay. Every outcome is logged and written to status.json, which /metadata shows.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from gunicorn.app.wsgiapp import WSGIApplication
from gunicorn.arbiter import Arbiter
from gunicorn.errors import HaltServer

from src.release.state import StateDir

# How long the new workers of a swap may take to load and test the model; and the preflight.
READY_TIMEOUT_ENV = "SWAP_TIMEOUT"
READY_TIMEOUT_DEFAULT = 120.0


@dataclass
class Swap:
    """A swap under way: the workers it replaces, the ones replacing them, what it changed."""

    old: set[int]
    new: set[int]
    deadline: float
    previous_env: dict[str, str | None]
    status: dict[str, Any] = field(default_factory=dict)


def swap_timeout() -> float:
    """SWAP_TIMEOUT in seconds."""
    raw = os.environ.get(READY_TIMEOUT_ENV, "")
    return float(raw) if raw else READY_TIMEOUT_DEFAULT


class SwappingArbiter(Arbiter):  # type: ignore[misc]
    """gunicorn's master, whose SIGHUP swaps the model as the module docstring says."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.state = StateDir.from_env()
        self.swap: Swap | None = None
        # A swap whose new workers serve, waiting for the old ones to finish.
        self.finishing: Swap | None = None
        # Workers sent SIGTERM by a swap and not yet gone: not to be counted, nor killed again.
        self.retiring: set[int] = set()

    def handle_hup(self) -> None:
        """Swap the model: see the module docstring."""
        if self.swap is not None or self.finishing is not None:
            self.log.warning("model swap: one is already under way; SIGHUP ignored")
            return
        if self.state is None:
            self.log.error("model swap: no SERVICE_STATE_DIR (start with run.sh); SIGHUP ignored")
            return
        try:
            request = self.state.take_request()
        except ValueError as err:
            self.refuse({}, f"bad swap request: {err}")
            return
        verdict = self.preflight(request)
        if not verdict.get("ok"):
            self.refuse(request, f"the new model did not start: {verdict.get('reason')}")
            return
        self.start_swap(request, verdict)

    def preflight(self, request: dict[str, str]) -> dict[str, Any]:
        """The verdict of :mod:`src.release.preflight` in the new workers' environment."""
        env = {**os.environ, **request}
        # Its metrics go to a folder of their own, never into the totals /metrics adds up.
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        command = [sys.executable, "-m", "src.release.preflight", self.app.app_uri]
        try:
            done = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=swap_timeout()
            )
        except subprocess.TimeoutExpired:
            return {"ok": False, "reason": f"not started within {swap_timeout():.0f} s"}
        sys.stderr.write(done.stderr)
        lines = done.stdout.strip().splitlines()
        try:
            verdict: dict[str, Any] = json.loads(lines[-1])
        except (IndexError, ValueError):
            return {"ok": False, "reason": f"the check exited with {done.returncode}"}
        return verdict

    def start_swap(self, request: dict[str, str], verdict: dict[str, Any]) -> None:
        """Start the new workers; the old ones serve until all of them are ready."""
        previous = {key: os.environ.get(key) for key in request}
        os.environ.update(request)
        old = set(self.WORKERS) - self.retiring
        new = {self.spawn_worker() for _ in range(self.num_workers)}
        status = {"model_file": verdict["model_file"], "model_sha256": verdict["sha256"]}
        self.swap = Swap(old, new, time.monotonic() + swap_timeout(), previous, status)
        self.log.info("model swap: %d new workers loading %s", len(new), verdict["model_file"])

    def manage_workers(self) -> None:
        """Move a swap on; keep gunicorn from trimming the surplus of workers a swap makes."""
        if self.swap is not None:
            self.advance_swap(self.swap)
        self.retiring &= set(self.WORKERS)
        finishing = self.finishing
        if finishing is not None and not finishing.old & self.retiring:
            # Only now: once `make reload` says "swapped", no answer comes from the old model.
            self.finishing = None
            self.record("swapped", finishing.status)
            self.log.info("model swap: done, now serving %s", finishing.status["model_file"])
        if self.swap is None and not self.retiring:
            super().manage_workers()

    def advance_swap(self, swap: Swap) -> None:
        """Finish the swap when every new worker is ready; end it when one cannot be."""
        if not swap.new <= set(self.WORKERS):
            self.abort_swap(swap, "a new worker exited before it was ready (see the log)")
        elif all(self.state is not None and self.state.is_ready(pid) for pid in swap.new):
            self.retire(swap.old & set(self.WORKERS))
            self.swap = None
            self.finishing = swap
            self.log.info("model swap: new workers ready, old ones finishing their requests")
        elif time.monotonic() > swap.deadline:
            self.abort_swap(swap, f"the new workers were not ready within {swap_timeout():.0f} s")

    def abort_swap(self, swap: Swap, reason: str) -> None:
        """The new workers go, the old ones go on serving, with the environment they had."""
        self.retire(swap.new & set(self.WORKERS))
        for key, value in swap.previous_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self.swap = None
        self.refuse(swap.status, reason)

    def retire(self, pids: set[int]) -> None:
        """SIGTERM: stop taking requests, finish those held (within --graceful-timeout)."""
        for pid in pids:
            self.kill_worker(pid, signal.SIGTERM)
        self.retiring |= pids

    def refuse(self, request: dict[str, Any], reason: str) -> None:
        """Log and record a swap that did not happen."""
        self.log.error("model swap refused, the running model goes on serving: %s", reason)
        self.record("refused", {**request, "reason": reason})

    def record(self, outcome: str, details: dict[str, Any]) -> None:
        """status.json, for /metadata."""
        if self.state is not None:
            self.state.write_status({"outcome": outcome, "at": time.time(), **details})

    def reap_workers(self) -> None:
        """gunicorn's reaping, except that a new worker failing to boot only ends the swap."""
        try:
            super().reap_workers()
        except HaltServer:
            swap = self.swap
            if swap is None or swap.new <= set(self.WORKERS):
                raise
            self.abort_swap(swap, "a new worker failed to boot (see the log)")
            self.reap_workers()


class Service(WSGIApplication):  # type: ignore[misc]
    """gunicorn's command line, run by :class:`SwappingArbiter`."""

    def run(self) -> None:
        """Serve until stopped (gunicorn's own ``run``, with the swapping master)."""
        try:
            SwappingArbiter(self).run()
        except RuntimeError as err:
            sys.exit(f"\nError: {err}\n")


if __name__ == "__main__":
    Service("%(prog)s [OPTIONS] [APP_MODULE]", prog="src.release.serve").run()
