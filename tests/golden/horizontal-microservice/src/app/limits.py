"""Caps on request bodies, enforced before a body is parsed.

One large body must not push a worker past its memory limit, so the size is checked from the
``Content-Length`` header and again while the body streams in (chunked uploads have no header).
Nor may many at once: a worker holds at most MAX_BODY_BYTES_IN_FLIGHT bytes of request bodies
across all the requests it is reading or answering (``BodyBudget``); past that, a new body is
answered 503 with ``Retry-After`` and its connection closed. The HTTP server charges the heads
still arriving to the same budget (``src.http_guard``), which it finds in the lifespan's state.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A refused body is still read (and dropped) up to this many bytes, so that an ordinary client gets
# the 413 instead of a broken pipe; beyond it the connection is simply closed after the answer.
DRAIN_LIMIT = 64 * 1024 * 1024
# The lifespan state's key of the worker's BodyBudget.
BUDGET_STATE_KEY = "body_budget"
BUSY = "the service is reading too many request bodies at once; retry shortly"
# The OpenAPI description of that answer.
BUSY_DESCRIPTION = "The worker holds too many request bodies at once: retry after Retry-After"
# What a POST body may be declared as: JSON, or for the V2 binary extension (which says so in its
# own header) raw bytes after the JSON. Form, multipart and text/plain bodies are what any web page
# may POST cross-site without a CORS preflight, so they are refused before the body is read.
JSON_TYPE = b"application/json"
BINARY_TYPE = b"application/octet-stream"
UTF8 = (b"utf-8", b"utf8")


def surely_too_many_rows(
    body: bytes, max_rows: int, openers_per_row: int, opener: bytes = b"["
) -> str | None:
    """Why ``body`` is refused before it is parsed, when it holds more rows than ``max_rows``.

    Parsing is what a body costs (a 1 MiB body of short rows is 100 000 rows, about 60 ms of a
    worker's event loop turned into Python lists), so the rows are counted first, by their
    openers: a valid body of rows has exactly ``1 + rows * openers_per_row`` opening brackets,
    since only numbers may be inside, and a valid body of records ``1 + rows`` opening braces.
    A body over the count for ``max_rows`` is refused whatever it holds; one under it is parsed
    and checked as usual. ``openers_per_row`` 0 counts nothing: where strings may hold brackets
    and braces, only the parsed rows are counted.
    """
    if openers_per_row and body.count(opener) > 1 + max_rows * openers_per_row:
        return f"data: more than {max_rows} rows; at most {max_rows} per request"
    return None


def content_type_problem(scope: Scope) -> str | None:
    """Why a POST's declared Content-Type is refused (415), or None when it may be read.

    No Content-Type at all is accepted: V2 clients such as tritonclient send none, and a browser
    sends one with every body it POSTs from a string or a form.
    """
    if scope["method"] != "POST":
        return None
    value = _header(scope, b"content-type")
    if value is None:
        return None
    media, _, parameters = value.partition(b";")
    media = media.strip().lower()
    binary = media == BINARY_TYPE and _header(scope, b"inference-header-content-length")
    if media != JSON_TYPE and not binary:
        shown = media.decode("latin-1")[:100]
        return f"Content-Type {shown!r}: expected application/json"
    for parameter in parameters.split(b";"):
        name, _, charset = parameter.strip().lower().partition(b"=")
        if name == b"charset" and charset.strip(b'" ') not in UTF8:
            return "Content-Type: the body must be UTF-8 (charset=utf-8 or none)"
    return None


# Why a body in UTF-16 or UTF-32 is refused; FastAPI's JSON parser would read it, pydantic's not.
NOT_UTF8 = "the body must be UTF-8 JSON"


def not_utf8(first: bytes) -> bool:
    """Whether a body's first bytes show UTF-16 or UTF-32: a NUL byte, or their byte-order mark.

    UTF-8 JSON has neither: a NUL inside a string is written as an escape.
    """
    head = first[:4]
    return b"\x00" in head or head.startswith((b"\xff\xfe", b"\xfe\xff"))


async def refuse_content_type(send: Send, scope: Scope, problem: str) -> None:
    """Answer 415 and close the connection, the body unread."""
    await _close_with(send, scope, 415, problem)


class BodyTooLargeError(Exception):
    """The body grew past the limit while it was being read."""


class NotUtf8Error(Exception):
    """The body is JSON in another encoding than UTF-8."""


class BodiesInFlightError(Exception):
    """This worker already holds as many bytes of request bodies as it may."""


class BodyBudget:
    """The bytes of request bodies (and unfinished heads) one worker holds at once.

    The event loop is the only user, so there is nothing to lock. A body is admitted whatever
    its size while no other is held, so a limit below MAX_BODY_BYTES never refuses every request.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int, own: int) -> None:
        """Hold ``size`` more bytes for a body holding ``own`` already, or BodiesInFlightError."""
        if self.held > own and self.held + size > self.limit:
            raise BodiesInFlightError
        self.held += size

    def give_back(self, size: int) -> None:
        self.held -= size


class BodySizeLimit:
    """Pure ASGI middleware: 413 for a body over ``max_bytes``, 503 past the worker's budget."""

    def __init__(self, app: ASGIApp, max_bytes: int, budget: BodyBudget) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.budget = budget

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = content_type_problem(scope)
        if problem is not None:
            await refuse_content_type(send, scope, problem)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _drain(receive, _drain_limit(scope, declared))
            await refuse(send, self.max_bytes, scope)
            return
        started = False
        seen = 0
        # Whether the body's last message was read: then there is nothing left to drain, and
        # another receive() would wait for the client to hang up.
        finished = False

        async def counting_receive() -> Message:
            nonlocal seen, finished
            message = await receive()
            finished = message["type"] != "http.request" or not message.get("more_body", False)
            size = len(message.get("body", b""))
            if seen == 0 and not_utf8(message.get("body", b"")):
                raise NotUtf8Error
            if seen + size > self.max_bytes:
                raise BodyTooLargeError
            self.budget.take(size, seen)
            seen += size
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLargeError:
            if started:
                raise
            if not finished:
                await _drain(receive, DRAIN_LIMIT)
            await refuse(send, self.max_bytes, scope)
        except BodiesInFlightError:
            if started:
                raise
            await refuse_busy(send, scope)
        except NotUtf8Error:
            if started:
                raise
            await refuse_content_type(send, scope, NOT_UTF8)
        finally:
            self.budget.give_back(seen)


async def read_body(scope: Scope, receive: Receive, max_bytes: int, budget: BodyBudget) -> bytes:
    """The whole request body, held in ``budget`` (the caller gives ``len(body)`` back).

    BodyTooLargeError (after draining) if it exceeds ``max_bytes``; BodiesInFlightError if the
    worker already holds its budget. Either way nothing of it stays held.
    """
    declared = _content_length(scope)
    if declared is not None and declared > max_bytes:
        await _drain(receive, _drain_limit(scope, declared))
        raise BodyTooLargeError
    chunks: list[bytes] = []
    size = 0
    more = True
    try:
        while more:
            message = await receive()
            chunk = message.get("body", b"")
            if size + len(chunk) > max_bytes:
                if message.get("more_body", False):
                    await _drain(receive, DRAIN_LIMIT)
                raise BodyTooLargeError
            budget.take(len(chunk), size)
            size += len(chunk)
            chunks.append(chunk)
            more = message.get("more_body", False)
    except BaseException:
        budget.give_back(size)
        raise
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_or_refuse(
    scope: Scope, receive: Receive, send: Send, max_bytes: int, budget: BodyBudget
) -> bytes | None:
    """The body as :func:`read_body` reads it, or None once it was answered 413 or 503."""
    try:
        return await read_body(scope, receive, max_bytes, budget)
    except BodyTooLargeError:
        await refuse(send, max_bytes, scope)
    except BodiesInFlightError:
        await refuse_busy(send, scope)
    return None


async def refuse(send: Send, max_bytes: int, scope: Scope) -> None:
    """Answer 413 and close the connection."""
    await _close_with(send, scope, 413, f"request body exceeds {max_bytes} bytes")


async def refuse_busy(send: Send, scope: Scope) -> None:
    """Answer 503 with Retry-After and close the connection, the rest of the body unread."""
    await _close_with(send, scope, 503, BUSY, [(b"retry-after", b"1")])


def error_key(path: str) -> str:
    """The key of an error's message: the V2 protocol's under its paths, FastAPI's elsewhere."""
    return "error" if path.startswith("/v2/") else "detail"


async def _close_with(
    send: Send,
    scope: Scope,
    status: int,
    message: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps({error_key(scope["path"]): message}, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _drain(receive: Receive, limit: int) -> None:
    """Read and drop the rest of the body, up to ``limit`` bytes."""
    dropped = 0
    while dropped < limit:
        message = await receive()
        dropped += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


def _drain_limit(scope: Scope, declared: int) -> int:
    """How much of a body declared too large to read anyway, so that the client sees the 413.

    Nothing when the client waits for ``100 Continue`` before sending it: the first receive()
    would tell the server to ask for the body, and the client would send it all.
    """
    expect = _header(scope, b"expect")
    if declared > DRAIN_LIMIT or (expect is not None and expect.lower() == b"100-continue"):
        return 0
    return declared


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None
