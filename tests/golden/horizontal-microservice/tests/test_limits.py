"""The worker's budget of request-body bytes: past it, a new body is refused 503, nothing lost.

Requests are driven on the application's own event loop (the test client's portal), so that one
can hold its body half-sent while another arrives, as slow uploads do.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from src.app import config
from src.app.limits import (
    BodiesInFlightError,
    BodyBudget,
    BodySizeLimit,
    BodyTooLargeError,
    read_body,
)

V2_INFER = f"/v2/models/{config.SERVICE_NAME}/infer"


class Upload:
    """One POST driven by hand: its body sent in two halves, the second when ``resume`` is set."""

    def __init__(self, app: Any, path: str, body: bytes) -> None:
        self.app, self.path, self.body = app, path, body
        self.resume = anyio.Event()
        self.sent: list[Message] = []

    async def run(self) -> None:
        half = len(self.body) // 2
        parts = [(self.body[:half], True), (self.body[half:], False)]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": self.path,
            "raw_path": self.path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"test"), (b"content-type", b"application/json")],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
            "state": {},
        }

        async def receive() -> Message:
            if len(parts) == 1:
                await self.resume.wait()
            if not parts:
                await anyio.sleep_forever()
            chunk, more = parts.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": more}

        async def send(message: Message) -> None:
            self.sent.append(message)

        await self.app(scope, receive, send)

    @property
    def status(self) -> int | None:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        return int(starts[0]["status"]) if starts else None

    @property
    def headers(self) -> dict[bytes, bytes]:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        return dict(starts[0]["headers"])


@pytest.fixture
def tight_budget(client: TestClient) -> Iterator[BodyBudget]:
    """The running app's budget, shrunk to one byte: any second body in flight is over it."""
    budget: BodyBudget = client.app.state.body_budget  # type: ignore[attr-defined]
    limit = budget.limit
    budget.limit = 1
    yield budget
    budget.limit = limit


@pytest.mark.parametrize(("path", "key"), [("/predict", "detail"), (V2_INFER, "error")])
def test_a_body_past_the_budget_is_refused_503_and_the_held_one_is_answered(
    client: TestClient, tight_budget: BodyBudget, path: str, key: str
) -> None:
    app = client.app
    held, late = Upload(app, path, b'{"held": true}'), Upload(app, path, b'{"late": true}')

    async def scenario() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(held.run)
            with anyio.fail_after(5):
                while tight_budget.held == 0:
                    await anyio.sleep(0.001)
            late.resume.set()
            await late.run()
            held.resume.set()

    client.portal.call(scenario)  # type: ignore[union-attr]
    assert late.status == 503
    assert late.headers[b"retry-after"] == b"1"
    body = b"".join(m.get("body", b"") for m in late.sent)
    assert key.encode() in body and b"retry" in body
    # The held request was answered as it would have been alone (its body is no valid request).
    assert held.status is not None and 400 <= held.status < 500
    assert tight_budget.held == 0


def test_the_budget_is_given_back_after_every_answer(
    client: TestClient, tight_budget: BodyBudget
) -> None:
    for _ in range(3):
        assert client.post("/predict", json={}).status_code == 422
    assert tight_budget.held == 0


def test_one_body_is_admitted_whatever_the_budget() -> None:
    budget = BodyBudget(limit=10)
    budget.take(600, own=0)
    budget.take(400, own=600)
    with pytest.raises(BodiesInFlightError):
        budget.take(1, own=0)
    budget.give_back(1000)
    budget.take(4, own=0)
    budget.take(6, own=0)
    with pytest.raises(BodiesInFlightError):
        budget.take(1, own=0)
    assert budget.held == 10


# A chunked body whose last message crosses the cap: once the body's last message is read, a
# server's receive() waits for the client to hang up, so draining it must not be tried.
LAST_OVER_THE_CAP: list[Message] = [
    {"type": "http.request", "body": b"x" * 10, "more_body": True},
    {"type": "http.request", "body": b"x" * 10, "more_body": False},
]
SCOPE: Scope = {"type": "http", "method": "POST", "path": "/predict", "headers": []}


def server_receive(messages: list[Message]) -> Receive:
    """The body's messages, then what a server does: wait until the client disconnects."""
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        await anyio.sleep_forever()
        return {"type": "http.disconnect"}

    return receive


async def read_everything(scope: Scope, receive: Receive, send: Send) -> None:
    """An application that reads the whole body, as every route does, then answers 200."""
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def test_a_body_crossing_the_cap_in_its_last_message_is_refused_at_once() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def main() -> None:
        limit = BodySizeLimit(read_everything, max_bytes=15, budget=BodyBudget(limit=1000))
        with anyio.fail_after(5):
            await limit(SCOPE, server_receive(LAST_OVER_THE_CAP), send)

    anyio.run(main)
    assert sent[0]["status"] == 413


def test_the_fast_paths_reader_refuses_it_at_once_too() -> None:
    async def main() -> None:
        with anyio.fail_after(5):
            await read_body(SCOPE, server_receive(LAST_OVER_THE_CAP), 15, BodyBudget(limit=1000))

    with pytest.raises(BodyTooLargeError):
        anyio.run(main)


# Bodies a web page may POST cross-site without a CORS preflight, and a JSON body not in UTF-8.
NOT_JSON = [
    "text/plain",
    "text/plain; charset=utf-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/json; charset=utf-16",
]


@pytest.mark.parametrize("content_type", NOT_JSON)
@pytest.mark.parametrize("path", ["/predict", V2_INFER])
def test_a_body_not_declared_as_json_is_415_on_either_path(
    client: TestClient, path: str, content_type: str
) -> None:
    response = client.post(path, content=b"{}", headers={"content-type": content_type})
    assert response.status_code == 415, response.text
    key = "error" if path.startswith("/v2/") else "detail"
    assert "Content-Type" in response.json()[key]


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=UTF-8"])
def test_json_in_utf8_is_read(client: TestClient, content_type: str) -> None:
    # An empty list of rows: refused for what it holds (422), not for how it is declared.
    response = client.post(
        "/predict", content=b'{"data": []}', headers={"content-type": content_type}
    )
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
@pytest.mark.parametrize("path", ["/predict", V2_INFER])
def test_json_in_another_encoding_is_415_on_either_path(
    client: TestClient, path: str, encoding: str
) -> None:
    body = '{"data": []}'.encode(encoding)
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 415, response.text
    key = "error" if path.startswith("/v2/") else "detail"
    assert "UTF-8" in response.json()[key]


def refuse_any_receive() -> Receive:
    """A receive() that fails the test: the body was asked for."""

    async def receive() -> Message:
        raise AssertionError("the body was read: the client would have been told 100 Continue")

    return receive


def test_a_body_declared_too_large_is_413_before_100_continue() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {**SCOPE, "headers": [(b"content-length", b"1000"), (b"expect", b"100-continue")]}

    async def main() -> None:
        limit = BodySizeLimit(read_everything, max_bytes=15, budget=BodyBudget(limit=1000))
        with anyio.fail_after(5):
            await limit(scope, refuse_any_receive(), send)
        with pytest.raises(BodyTooLargeError), anyio.fail_after(5):
            await read_body(scope, refuse_any_receive(), 15, BodyBudget(limit=1000))

    anyio.run(main)
    assert sent[0]["status"] == 413
    assert (b"connection", b"close") in sent[0]["headers"]
