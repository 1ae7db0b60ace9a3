"""Slow, silent and oversized requests are cut off by the HTTP server of every service.

Against a real web-single service (gunicorn, its uvicorn workers with ``src.http_guard``) on
127.0.0.1, with the limits shortened through the environment so that the test stays short.
"""

from __future__ import annotations

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
