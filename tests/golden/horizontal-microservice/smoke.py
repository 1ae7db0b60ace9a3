#!/usr/bin/env python3
"""Smoke test of the running proxy and its backends, with nothing but the standard library.

    python3 smoke.py [PROXY_URL]     (default http://127.0.0.1:8000)

Waits for the proxy's /ready, checks that every backend is ready behind it, that the sample rows
get an answer from every backend with none missing, and that a bad row is refused with 422. Exit 0
when all pass, 1 with the failing check otherwise. Use it after `docker compose up`, a deployment,
or a port-forward of the proxy.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

SAMPLE = [[5.1, 3.5, 1.4, 0.2]]
BACKENDS = ["setosa", "versicolor", "virginica"]
AGGREGATE = "highest"
READY_SECONDS = 60


class SmokeError(Exception):
    """A check failed."""


def call(base: str, path: str, body: Any = None) -> tuple[int, Any]:
    """GET ``path`` (or POST ``body`` as JSON); the status and the decoded answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + path, data=data, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def wait_ready(base: str) -> dict[str, Any]:
    """Poll /ready until the proxy and every backend behind it are ready; its answer."""
    deadline = time.monotonic() + READY_SECONDS
    answer: Any = None
    while time.monotonic() < deadline:
        try:
            status, answer = call(base, "/ready")
            if status == 200 and set(answer["backends"].values()) == {"ok"}:
                return dict(answer)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise SmokeError(f"{base}/ready: the proxy or a backend was not ready in time: {answer}")


def expect(condition: bool, what: str) -> None:
    """Fail the smoke test with ``what`` unless ``condition`` holds."""
    if not condition:
        raise SmokeError(what)
    print(f"ok  {what}")


def check(base: str) -> None:
    """The checks, in the order a client meets them."""
    ready = wait_ready(base)
    expect(sorted(ready["backends"]) == sorted(BACKENDS), "every backend is ready behind the proxy")
    expect(call(base, "/health")[0] == 200, "GET /health is 200")
    status, answer = call(base, "/predict", {"data": SAMPLE})
    expect(status == 200 and answer["missing"] == {}, "POST /predict is answered by every backend")
    if AGGREGATE == "highest":
        expect(set(answer["prediction"]) <= set(BACKENDS), "each row is given a backend's name")
    else:
        expect(sorted(answer["predictions"]) == sorted(BACKENDS), "every backend's scores")
    status, _ = call(base, "/predict", {"data": [None]})
    expect(status == 422, "POST /predict refuses a bad row with 422")


def main() -> int:
    """Run the checks against the URL given (or the default)."""
    base = (sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000").rstrip("/")
    try:
        check(base)
    except (SmokeError, OSError, KeyError, ValueError) as err:
        print(f"FAILED  {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
