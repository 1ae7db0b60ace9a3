"""Slow and oversized requests are cut off by the HTTP server, before the application sees them.

Each connection holds a socket, a file descriptor and buffers until the worker runs out of them,
so a client may not take as long as it likes, nor send as much head as it likes:

- ``HEADER_TIMEOUT_SECONDS`` (10): from a connection's first byte (or a request's, on a kept-alive
  connection) to the end of the request's head. Later: ``408`` and the connection closed.
- ``BODY_TIMEOUT_SECONDS`` (60): from the end of the head to the end of the body (a declared body
  that never comes, or trickles). Later: ``408`` if nothing was answered yet, and closed.
- ``MAX_HEADER_BYTES`` (65536): the request line and headers together. More: ``431``, closed.

The bytes of heads still arriving are held by the worker, so they draw on the same per-worker
budget as request bodies (``MAX_BODY_BYTES_IN_FLIGHT``, handed over by the application's lifespan):
many unfinished heads cannot add up past it. A head that would is answered ``503`` with
``Retry-After: 1`` and closed; one arriving in a single read (any ordinary request) is never held.

run.sh starts gunicorn with :class:`Worker`, uvicorn's worker with :class:`GuardedHttpTools` as
its HTTP protocol (uvicorn's own httptools protocol, plus the three checks above).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

from src.app.limits import BUDGET_STATE_KEY, BodiesInFlightError, BodyBudget
from src.release.state import StateDir, announcing_ready


def _setting(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        # Read in every worker at start-up: a bad value stops the service with this message.
        raise SystemExit(f"{name}={raw!r}: expected a number above 0")
    return value


HEADER_TIMEOUT_SECONDS = _setting("HEADER_TIMEOUT_SECONDS", 10)
BODY_TIMEOUT_SECONDS = _setting("BODY_TIMEOUT_SECONDS", 60)
MAX_HEADER_BYTES = int(_setting("MAX_HEADER_BYTES", 65536))
# How long a stopping worker keeps a connection that holds no request: one accepted just before
# the worker stopped listening may carry a request still on its way (a model swap, a rollout).
DRAIN_SECONDS = _setting("DRAIN_SECONDS", 1)


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a head timeout, a body timeout and a head size cap."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        # Bytes received while the head is incomplete (a head that never ends), and the bytes
        # of the head's parts (a whole head that arrived in one read).
        self._head_bytes = 0
        self._head_parsed = 0
        # What this connection's unfinished head holds of the worker's budget.
        self._head_held = 0
        self._refused = False
        self._timer: asyncio.TimerHandle | None = None
        self._draining = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(HEADER_TIMEOUT_SECONDS, 408, "request head not received in time")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._release_head()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        head_pending = self._in_head
        super().data_received(data)
        # Counted once the parser has seen the bytes: a chunk that ends the head may carry body.
        if head_pending and self._in_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEADER_BYTES:
                self._refuse(431, f"request head over {MAX_HEADER_BYTES} bytes")
            else:
                self._hold_head(len(data))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._head_parsed = 0
        self._release_head()
        if self._timer is None:
            self._arm(HEADER_TIMEOUT_SECONDS, 408, "request head not received in time")

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._head_parsed += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._head_parsed += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        self._release_head()
        if self._head_parsed > MAX_HEADER_BYTES:
            self._refuse(431, f"request head over {MAX_HEADER_BYTES} bytes")
            return
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False
        if self._has_body():
            self._arm(BODY_TIMEOUT_SECONDS, 408, "request body not received in time")

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        if not self._refused:
            super().on_message_complete()

    def shutdown(self) -> None:
        """The worker stops: answer what arrives within DRAIN_SECONDS (then close), not fail it."""
        self._draining = True
        if self._between_requests():
            self.loop.call_later(DRAIN_SECONDS, self._close_if_idle)
        else:
            super().shutdown()

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _close_if_idle(self) -> None:
        if self._between_requests() and not self.transport.is_closing():
            self.transport.close()

    def _has_body(self) -> bool:
        for name, value in self.headers:
            if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
                return True
        return False

    def _hold_head(self, size: int) -> None:
        budget = self.app_state.get(BUDGET_STATE_KEY)
        if not isinstance(budget, BodyBudget):
            return
        try:
            budget.take(size, own=self._head_held)
        except BodiesInFlightError:
            self._refuse(503, "the service is holding too many unfinished requests; retry shortly")
            return
        self._head_held += size

    def _release_head(self) -> None:
        budget = self.app_state.get(BUDGET_STATE_KEY)
        if self._head_held and isinstance(budget, BodyBudget):
            budget.give_back(self._head_held)
        self._head_held = 0

    def _arm(self, seconds: float, status: int, reason: str) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._refuse, status, reason)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _refuse(self, status: int, reason: str) -> None:
        """Answer ``status`` unless an answer is being sent, then close the connection."""
        self._timer = None
        self._refused = True
        self._release_head()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        # The cycle may be the previous request's, long answered: only one half-sent answer
        # keeps the status line from being written.
        answering = cycle is not None and cycle.response_started and not cycle.response_complete
        if not answering:
            body = f'{{"detail":"{reason}"}}'.encode()
            retry = b"retry-after: 1\r\n" if status == 503 else b""
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n%sconnection: close\r\n\r\n%s"
                % (status, REASONS[status], len(body), retry, body)
            )
        self.transport.close()


REASONS = {
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


class Worker(UvicornWorker):  # type: ignore[misc]
    """gunicorn's uvicorn worker, serving HTTP with :class:`GuardedHttpTools`."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {"loop": "auto", "http": GuardedHttpTools}

    def load_wsgi(self) -> None:
        """Load the application; under run.sh, it tells the master when it is ready to serve."""
        super().load_wsgi()
        state = StateDir.from_env()
        if state is not None:
            self.wsgi = announcing_ready(self.wsgi, state)
