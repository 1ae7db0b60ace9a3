"""Slow, silent and oversized requests are cut off by the HTTP server of every service.

Against a real web-single service (gunicorn, its uvicorn workers with ``src.http_guard``) on
127.0.0.1, with the limits shortened through the environment so that the test stays short.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from live import Stack, call, running

from builder_core.patterns import load_pattern

pytestmark = pytest.mark.slow
LIMITS = {"HEADER_TIMEOUT_SECONDS": "1", "BODY_TIMEOUT_SECONDS": "1", "MAX_HEADER_BYTES": "8192"}


@pytest.fixture(scope="module")
def stack(
    generated_project: Callable[[str], Path],
    service_python: Callable[[Path], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    project = generated_project("web-single")
    info = load_pattern("web-single").info
    folder = tmp_path_factory.mktemp("slow-clients")
    with running(project, service_python(project), info, folder, env=LIMITS) as started:
        yield started


def exchange(base: str, head: bytes, trickle: int = 0, seconds: float = 10) -> tuple[float, bytes]:
    """Send ``head`` (then a header line every 0.3 s, ``trickle`` times); the seconds until the
    server answered or closed, and its first bytes."""
    host, port = base.removeprefix("http://").split(":")
    began = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=seconds) as sock:
        sock.sendall(head)
        for _ in range(trickle):
            time.sleep(0.3)
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
        try:
            answer = sock.recv(4096)
        except OSError:
            answer = b""
    return time.monotonic() - began, answer


def test_a_head_that_trickles_in_is_cut_off(stack: Stack) -> None:
    seconds, answer = exchange(stack.base, b"GET /health HTTP/1.1\r\nHost: t\r\n", trickle=20)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert seconds < 4


def test_a_connection_that_sends_nothing_is_closed(stack: Stack) -> None:
    seconds, answer = exchange(stack.base, b"")
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert seconds < 4


def test_a_declared_body_that_never_comes_is_cut_off(stack: Stack) -> None:
    head = (
        b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"data'
    )
    seconds, answer = exchange(stack.base, head)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert seconds < 4


def test_an_oversized_head_is_431(stack: Stack) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    _seconds, answer = exchange(stack.base, head)
    assert answer.startswith(b"HTTP/1.1 431"), answer


def test_many_slow_clients_leave_health_answering_fast(stack: Stack) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: t\r\n"
    with ThreadPoolExecutor(max_workers=100) as pool:
        slow = [pool.submit(exchange, stack.base, head, 10) for _ in range(100)]
        time.sleep(0.5)
        timings = []
        for _ in range(10):
            began = time.monotonic()
            status, _ = call(f"{stack.base}/health")
            timings.append(time.monotonic() - began)
            assert status == 200
        answers = [future.result() for future in slow]
    assert max(timings) < 0.5, timings
    assert all(answer.startswith(b"HTTP/1.1 408") for _, answer in answers)


def test_ordinary_requests_are_untouched(stack: Stack) -> None:
    status, answer = call(f"{stack.base}/predict", b'{"data": [[5.1, 3.5, 1.4, 0.2]]}')
    assert status == 200, answer


def test_a_kept_alive_connection_gets_the_same_limits(stack: Stack) -> None:
    first = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n"
    second = b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    host, port = stack.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(first)
        # The whole first answer (its head and body may come in separate reads).
        answer = b""
        while b'{"health":"ok"}' not in answer:
            chunk = sock.recv(4096)
            assert chunk, answer
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200")
        sock.sendall(second)
        assert sock.recv(4096).startswith(b"HTTP/1.1 431")


@pytest.fixture(scope="module")
def one_worker(
    generated_project: Callable[[str], Path],
    service_python: Callable[[Path], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """One worker (so that every connection draws on one budget) of 20,000 request bytes."""
    project = generated_project("web-single")
    info = load_pattern("web-single").info
    folder = tmp_path_factory.mktemp("head-budget")
    env = {"WORKERS": "1", "MAX_BODY_BYTES_IN_FLIGHT": "20000", "MAX_HEADER_BYTES": "8192"}
    with running(project, service_python(project), info, folder, env=env) as started:
        yield started


def answer_within(sock: socket.socket, seconds: float) -> bytes:
    """The first bytes the server sent on ``sock`` within ``seconds`` (nothing: b"")."""
    sock.settimeout(seconds)
    try:
        return sock.recv(4096)
    except TimeoutError:
        return b""


def test_unfinished_heads_draw_on_the_workers_memory_budget(one_worker: Stack) -> None:
    host, port = one_worker.base.removeprefix("http://").split(":")
    # 6,000 bytes of a head that does not end: three fit in 20,000 bytes, a fourth does not.
    unfinished = b"GET /health HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * 6000
    with contextlib.ExitStack() as held:
        socks = []
        for _ in range(6):
            sock = held.enter_context(socket.create_connection((host, int(port)), timeout=10))
            sock.sendall(unfinished)
            time.sleep(0.05)
            socks.append(sock)
        answers = [answer_within(sock, 0.3) for sock in socks]
        assert answers[:3] == [b"", b"", b""]
        for answer in answers[3:]:
            assert answer.startswith(b"HTTP/1.1 503"), answer
            assert b"retry-after: 1" in answer
        # A request whose head arrives whole is never held, so it still gets through.
        assert call(f"{one_worker.base}/health")[0] == 200
    # The heads of closed connections are given back: a new one is held again.
    time.sleep(0.2)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(unfinished)
        assert answer_within(sock, 0.3) == b""
        sock.sendall(b"\r\n\r\n")
        assert answer_within(sock, 5).startswith(b"HTTP/1.1 200")
