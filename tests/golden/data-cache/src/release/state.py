"""The files through which the swap's parties talk: ``make reload``, gunicorn's master, the workers.

All of them live in SERVICE_STATE_DIR, which run.sh makes for each service it starts:

* ``gunicorn.pid``: the master, which a swap request is signalled to (SIGHUP);
* ``request.json``: the environment the next workers start with (MODEL_FILEPATH, ...), written by
  ``python -m src.reload`` and taken by the master on SIGHUP;
* ``status.json``: how the last swap ended, which /metadata shows;
* ``ready/<pid>``: a worker's mark that it loaded and tested its model and is about to serve.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

STATE_DIR_ENV = "SERVICE_STATE_DIR"
# What a swap request may change: the model and what belongs to it, nothing else of the service.
SWAPPABLE = ("MODEL_FILEPATH", "LABEL_FILEPATH", "MODEL_SHA256", "MODEL_URI")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class StateDir:
    """The state folder of one running service."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pid_file = path / "gunicorn.pid"
        self.request_file = path / "request.json"
        self.status_file = path / "status.json"
        self.ready_dir = path / "ready"

    @classmethod
    def from_env(cls, environ: MutableMapping[str, str] | None = None) -> StateDir | None:
        """The folder run.sh made, or None when the service runs without one (as in tests)."""
        raw = (os.environ if environ is None else environ).get(STATE_DIR_ENV)
        return cls(Path(raw)) if raw else None

    def write_request(self, overrides: dict[str, str]) -> None:
        """Ask for the next workers to start with ``overrides`` in their environment."""
        unknown = sorted(set(overrides) - set(SWAPPABLE))
        if unknown:
            raise ValueError(f"not swappable: {', '.join(unknown)}")
        _write_json(self.request_file, overrides)

    def take_request(self) -> dict[str, str]:
        """The pending request (consumed), or {} for "the same files again"; ValueError if bad."""
        try:
            raw = self.request_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        self.request_file.unlink(missing_ok=True)
        request = json.loads(raw)
        if not isinstance(request, dict) or not set(request) <= set(SWAPPABLE):
            raise ValueError(f"{self.request_file}: expected an object with keys from {SWAPPABLE}")
        return {str(key): str(value) for key, value in request.items()}

    def write_status(self, status: dict[str, Any]) -> None:
        """Record how the last swap ended (replacing the file at once, never half-written)."""
        _write_json(self.status_file, status)

    def read_status(self) -> dict[str, Any] | None:
        """How the last swap ended, or None when there was none."""
        try:
            status = json.loads(self.status_file.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        return status if isinstance(status, dict) else None

    def mark_ready(self, pid: int) -> None:
        """Worker ``pid`` has its model loaded and tested."""
        self.ready_dir.mkdir(exist_ok=True)
        (self.ready_dir / str(pid)).touch()

    def is_ready(self, pid: int) -> bool:
        """Whether worker ``pid`` marked itself ready."""
        return (self.ready_dir / str(pid)).exists()

    def forget(self, pid: int) -> None:
        """Worker ``pid`` is gone: its mark goes too (pids are reused)."""
        (self.ready_dir / str(pid)).unlink(missing_ok=True)


def last_swap() -> dict[str, Any] | None:
    """How the last swap of this service ended, or None (no swap, or no state folder)."""
    state = StateDir.from_env()
    return None if state is None else state.read_status()


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        json.dump(payload, file)
    os.replace(temporary, path)


def announcing_ready(app: ASGIApp, state: StateDir) -> ASGIApp:
    """``app``, marking this worker ready once its lifespan start-up (the model's load) is done."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def send_and_mark(message: Message) -> None:
            await send(message)
            if message["type"] == "lifespan.startup.complete":
                state.mark_ready(os.getpid())

        await app(scope, receive, send_and_mark)

    return wrapped
