#!/usr/bin/env python3
"""Smoke test of a running prediction-cache service, with nothing but the standard library.

    python3 smoke.py [BASE_URL]     (default http://127.0.0.1:8000)

Waits for /ready, then checks the endpoints a client relies on, and that the sample rows, asked
again, are answered from the cache with the same answer (when Redis is up). Exit 0 when all pass,
1 with the failing check otherwise. Use it after `docker compose up`, a deployment, or a
port-forward.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

SAMPLE = [[5.1, 3.5, 1.4, 0.2]]
READY_SECONDS = 60
# The first answer is cached in the background; the next ones may come a moment later.
HIT_SECONDS = 5


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
    """Poll /ready until it answers 200; its answer."""
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        try:
            status, answer = call(base, "/ready")
            if status == 200:
                return dict(answer)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise SmokeError(f"{base}/ready was not 200 within {READY_SECONDS} s")


def expect(condition: bool, what: str) -> None:
    """Fail the smoke test with ``what`` unless ``condition`` holds."""
    if not condition:
        raise SmokeError(what)
    print(f"ok  {what}")


def cached_post(base: str, body: Any) -> tuple[int, str, bytes]:
    """POST ``body`` as JSON; the status, the ``cache`` header and the raw answer."""
    request = urllib.request.Request(
        base + "/predict",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.headers.get("cache", ""), response.read()


def answered_from_cache(base: str) -> bool:
    """Ask for the sample rows again until the cache answers; whether it gave the same answer."""
    status, _, first = cached_post(base, {"data": SAMPLE})
    deadline = time.monotonic() + HIT_SECONDS
    while status == 200 and time.monotonic() < deadline:
        status, outcome, answer = cached_post(base, {"data": SAMPLE})
        if outcome == "hit":
            return answer == first
        time.sleep(0.2)
    return False


def check(base: str) -> None:
    """The checks, in the order a client meets them."""
    ready = wait_ready(base)
    expect(call(base, "/health")[0] == 200, "GET /health is 200")
    status, meta = call(base, "/metadata")
    expect(status == 200 and len(meta["model_sha256"]) == 64, "GET /metadata names the model")
    status, answer = call(base, "/predict", {"data": SAMPLE})
    expect(status == 200 and len(answer["prediction"]) == len(SAMPLE), "POST /predict scores rows")
    status, labels = call(base, "/predict/label", {"data": SAMPLE})
    names = set(meta["labels"])
    expect(status == 200 and set(labels["prediction"]) <= names, "POST /predict/label labels rows")
    status, _ = call(base, "/predict", {"data": [None]})
    expect(status == 422, "POST /predict refuses a bad row with 422")
    if ready["cache"] == "ok":
        expect(answered_from_cache(base), "the cache answers the sample rows again, the same")
    else:
        print(f"--  cache {ready['cache']}: answers are uncached (is Redis running?)")


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
