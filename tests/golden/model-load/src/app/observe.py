"""Every request observed: its ID, its metrics and its log line.

A pure ASGI middleware, the outermost of the service's own, so that it sees every answer — those
of the fast path (``src.app.fast``) and the 413s of the body limit too. It has to be cheap next to
a model that answers in a tenth of a millisecond, so per request it only reads one header, adds
to this worker's tally (``src.app.metrics``) and, when REQUEST_LOG asks for the request's line
(``all``, or ``errors`` and a 4xx or 5xx answer), formats that line into a buffer. Twice a second,
when the worker stops and before a scrape, the tally is published to prometheus_client and the
buffered lines are written to stdout (in writes of at most 4 KiB, which a pipe never interleaves
with another worker's). Going through ``logging`` would cost more than serving the request: the
request line has the same shape as every other line (``src.app.logs``).

The request ID is the client's ``X-Request-ID`` when it is a plain token of at most 128
characters, else a new random one; it is sent back in ``X-Request-ID`` on every answer and is in
every log line written while the request is served.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import time
from collections.abc import Awaitable
from time import perf_counter

import orjson
from fastapi.telemetry import TelemetryConfig
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from src.app.logs import CLOCK, REQUEST_ID, text_value
from src.app.metrics import TALLY

# Set by a middleware that answers without FastAPI's routing: the route template it served.
ROUTE_KEY = "observe.route"
# The route label of requests no route took: unknown paths, bodies refused before routing.
UNROUTED = "unrouted"
# Any other method is counted as "other": the label's values must stay few.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
HEADER = b"x-request-id"
VALID_ID = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")
LOGGER = "src.app.requests"
# FastAPI's own OpenTelemetry bridge, off (OPENTELEMETRY=true leaves it on).
NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
# Seconds between publications of the tally and writes of the buffered lines.
INTERVAL = 0.5
# Lines buffered before they are written whatever the time: bounds the memory under heavy load.
MAX_PENDING = 256
# A write to a pipe of at most PIPE_BUF bytes is never interleaved with another process's.
MAX_WRITE = 4096
MAX_PATH = 1024


def mark_route(scope: Scope, template: str) -> None:
    """Name the route that answers ``scope`` when FastAPI's router does not (the fast path)."""
    scope[ROUTE_KEY] = template


def route_of(scope: Scope) -> str:
    """The route template that answered: low-cardinality, unlike the path."""
    marked: str | None = scope.get(ROUTE_KEY)
    if marked is not None:
        return marked
    path: str | None = getattr(scope.get("route"), "path", None)
    return UNROUTED if path is None else path


def request_id_of(scope: Scope) -> bytes:
    """The client's X-Request-ID if it is a plain token, else a new random ID (32 hex digits)."""
    for key, value in scope["headers"]:
        if key == HEADER:
            if VALID_ID.fullmatch(value):
                return bytes(value)
            break
    return os.urandom(16).hex().encode()


class RequestLog:
    """This worker's request lines, buffered and written to stdout in batches.

    Each line is one f-string in the shape of ``src.app.logs.json_line`` or ``text_line``, whose
    generic field handling costs three times as much. Only the path can hold anything at all: it
    is the one value escaped on every line. The request ID is a plain token, the method one of
    METHODS, and each route, from the service's own code, is escaped once and remembered.
    """

    def __init__(self, log_format: str) -> None:
        self._json = log_format == "json"
        self._pending: list[str] = []
        self._pid = os.getpid()
        self._routes: dict[str, str] = {}

    def started(self) -> None:
        """The worker serves from now on (under gunicorn, in the forked process)."""
        self._pid = os.getpid()

    def add(
        self, request_id: str, method: str, route: str, path: str, status: int, seconds: float
    ) -> None:
        """One request's line."""
        when = CLOCK.iso(time.time())
        quoted = self._routes.get(route)
        if quoted is None:
            quoted = self._routes[route] = self._quote(route)
        if self._json:
            line = (
                f'{{"time":"{when}","level":"INFO","logger":"{LOGGER}","pid":{self._pid},'
                f'"message":"{method} {quoted[1:-1]} {status}","request_id":"{request_id}",'
                f'"method":"{method}","route":{quoted},"path":{self._quote(path[:MAX_PATH])},'
                f'"status":{status},"duration_ms":{seconds * 1000:.3f}}}'
            )
        else:
            line = (
                f"{when} [{self._pid}] [INFO] {LOGGER}: {method} {route} {status} "
                f"request_id={text_value(request_id)} method={method} route={quoted} "
                f"path={self._quote(path[:MAX_PATH])} status={status} "
                f"duration_ms={seconds * 1000:.3f}"
            )
        self._pending.append(line)
        if len(self._pending) >= MAX_PENDING:
            self.flush()

    def _quote(self, value: str) -> str:
        """A JSON string (with its quotes); in text, the value as it goes after ``key=``."""
        if self._json:
            return orjson.dumps(value).decode()
        return text_value(value)

    def flush(self) -> None:
        """Write the buffered lines, whole lines per write and at most MAX_WRITE bytes each."""
        lines, self._pending = self._pending, []
        chunk: list[str] = []
        size = 0
        for line in lines:
            length = (len(line) if line.isascii() else len(line.encode())) + 1
            if chunk and size + length > MAX_WRITE:
                _write("".join(chunk))
                chunk, size = [], 0
            chunk.append(line + "\n")
            size += length
        if chunk:
            _write("".join(chunk))


def _write(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except (OSError, ValueError):
        # stdout closed or gone (the container is stopping): the lines cannot be saved anyway.
        return


class Observe:
    """Pure ASGI middleware: request ID, request metrics and the request log.

    ``request_log`` is ``all`` (a line per request), ``errors`` (for 4xx and 5xx answers only)
    or ``off``.
    """

    def __init__(self, app: ASGIApp, request_log: str, log_format: str) -> None:
        self.app = app
        self.log = None if request_log == "off" else RequestLog(log_format)
        # The lowest status that gets a line.
        self.log_from = 400 if request_log == "errors" else 0
        self._ticker: asyncio.TimerHandle | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                send = self._lifespan_send(send)
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        request_id = request_id_of(scope)
        header = (HEADER, request_id)
        # An exception escaping the app is answered 500 by Starlette's outermost middleware.
        status = 500

        # A plain function handing back send's awaitable: no coroutine of its own per message.
        def send_with_id(message: Message) -> Awaitable[None]:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            return send(message)

        # Never reset: the server runs each request in a task, so in a context, of its own.
        REQUEST_ID.set(request_id.decode())
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = perf_counter() - started
            method = scope["method"] if scope["method"] in METHODS else "other"
            route = route_of(scope)
            TALLY.request(method, route, status, seconds)
            if self.log is not None and status >= self.log_from:
                self.log.add(request_id.decode(), method, route, scope["path"], status, seconds)

    def _lifespan_send(self, send: Send) -> Send:
        async def watched(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                self._start()
            elif message["type"] == "lifespan.shutdown.complete":
                self._stop()
            await send(message)

        return watched

    def _start(self) -> None:
        if self.log is not None:
            self.log.started()
            if not logging.getLogger(LOGGER).isEnabledFor(logging.INFO):
                # LOG_LEVEL=warning or above silences the request lines as well.
                self.log = None
        self._ticker = asyncio.get_running_loop().call_later(INTERVAL, self._tick)

    def _tick(self) -> None:
        try:
            self._flush()
        finally:
            self._ticker = asyncio.get_running_loop().call_later(INTERVAL, self._tick)

    def _stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        self._flush()

    def _flush(self) -> None:
        TALLY.publish()
        if self.log is not None:
            self.log.flush()
