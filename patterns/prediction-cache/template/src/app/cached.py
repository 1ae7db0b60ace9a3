"""Answers from the cache: POST /predict (and /predict/label) looked up in Redis before the model.

A pure ASGI middleware in front of the fast path and FastAPI's routes, so both are cached the same
way. It reads the body once, under the same size limit and body budget as the routes, and:

- **hit**: sends the stored answer, byte for byte what the model's answer was; no validation or
  inference runs, because only a 200 answer to the same canonical rows was ever stored;
- **miss**: hands the request to the routes, which validate and predict as always; a 200 answer
  is written to Redis in the background after it is sent, with the TTL;
- **bypass**: Redis is unavailable (failing, or resting after a failure), or the body is not a
  request the routes could answer: the routes answer, nothing is cached, nothing fails.

Every answer of these routes carries the outcome in its ``cache`` header.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from src.app.fast import ROUTES
from src.app.limits import content_type_problem, read_or_refuse
from src.app.observe import mark_route
from src.cache.answers import AnswerCache, canonical_rows
from src.cache.guard import CacheUnavailableError

HEADER = b"cache"
JSON = (b"content-type", b"application/json")


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the routes the body already read, then the client's messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class Recorder:
    """Passes the routes' answer on with the ``cache`` header, and keeps a copy of a 200's body."""

    def __init__(self, send: Send, outcome: bytes) -> None:
        self._send = send
        self._outcome = outcome
        self.status = 0
        self.complete = False
        self._chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            message = {**message, "headers": [*message.get("headers", []), (HEADER, self._outcome)]}
        elif message["type"] == "http.response.body" and self.status == 200:
            self._chunks.append(message.get("body", b""))
            self.complete = not message.get("more_body", False)
        await self._send(message)

    @property
    def body(self) -> bytes:
        """The answer's body as sent."""
        return b"".join(self._chunks)


class CachedAnswers:
    """Pure ASGI middleware serving the routes of :data:`src.app.fast.ROUTES` through the cache."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._cached(scope):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        settings = state.settings
        body = await read_or_refuse(
            scope, receive, send, settings.max_body_bytes, state.body_budget
        )
        if body is None:
            return
        # The routes read the same body again and hold it in the budget themselves.
        state.body_budget.give_back(len(body))
        receive = replaying(body, receive)
        rows = canonical_rows(body, settings.max_rows)
        if rows is None:
            await self.app(scope, receive, Recorder(send, b"bypass"))
            return
        cache: AnswerCache = state.answer_cache
        key = cache.key(scope["path"], rows)
        try:
            answer = await cache.get(key)
        except CacheUnavailableError:
            await self.app(scope, receive, Recorder(send, b"bypass"))
            return
        if answer is not None:
            await self._send_hit(scope, send, answer)
            return
        recorder = Recorder(send, b"miss")
        await self.app(scope, receive, recorder)
        if recorder.status == 200 and recorder.complete:
            cache.put_later(key, recorder.body)

    @staticmethod
    def _cached(scope: Scope) -> bool:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in ROUTES:
            return False
        state: Any = scope["app"].state
        # Before the model is ready the routes answer 503; a refused Content-Type is theirs too.
        return bool(state.ready) and content_type_problem(scope) is None

    @staticmethod
    async def _send_hit(scope: Scope, send: Send, answer: bytes) -> None:
        mark_route(scope, scope["path"])
        headers = [JSON, (b"content-length", str(len(answer)).encode()), (HEADER, b"hit")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})
