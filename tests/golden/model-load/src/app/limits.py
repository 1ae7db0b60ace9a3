"""A cap on request body size, enforced before the body is parsed.

One large body must not push a worker past its memory limit, so the size is checked from the
``Content-Length`` header and again while the body streams in (chunked uploads have no header).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A refused body is still read (and dropped) up to this many bytes, so that an ordinary client gets
# the 413 instead of a broken pipe; beyond it the connection is simply closed after the answer.
DRAIN_LIMIT = 64 * 1024 * 1024


def surely_too_many_rows(body: bytes, max_rows: int, brackets_per_row: int) -> str | None:
    """Why ``body`` is refused before it is parsed, when it holds more rows than ``max_rows``.

    Parsing is what a body costs (a 1 MiB body of short rows is 100 000 rows, about 60 ms of a
    worker's event loop turned into Python lists), so the rows are counted first, by their
    opening brackets: a valid body has exactly ``1 + rows * brackets_per_row`` of them, since only
    numbers may be inside. A body over the count for ``max_rows`` is refused whatever it holds;
    one under it is parsed and checked as usual.
    """
    if body.count(b"[") > 1 + max_rows * brackets_per_row:
        return f"data: more than {max_rows} rows; at most {max_rows} per request"
    return None


class BodyTooLargeError(Exception):
    """The body grew past the limit while it was being read."""


class BodySizeLimit:
    """Pure ASGI middleware: 413 for any HTTP request whose body exceeds ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _drain(receive, 0 if declared > DRAIN_LIMIT else declared)
            await refuse(send, self.max_bytes, scope)
            return
        started = False
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise BodyTooLargeError
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
            await _drain(receive, DRAIN_LIMIT)
            await refuse(send, self.max_bytes, scope)


async def read_body(scope: Scope, receive: Receive, max_bytes: int) -> bytes:
    """The whole request body; BodyTooLargeError (after draining) if it exceeds ``max_bytes``."""
    declared = _content_length(scope)
    if declared is not None and declared > max_bytes:
        await _drain(receive, 0 if declared > DRAIN_LIMIT else declared)
        raise BodyTooLargeError
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            await _drain(receive, DRAIN_LIMIT)
            raise BodyTooLargeError
        chunks.append(chunk)
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def refuse(send: Send, max_bytes: int, scope: Scope) -> None:
    """Answer 413 and close the connection (the V2 protocol's error shape under its paths)."""
    key = "error" if scope["path"].startswith("/v2/") else "detail"
    body = f'{{"{key}":"request body exceeds {max_bytes} bytes"}}'.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
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


def _content_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
