#!/usr/bin/env python3
"""Smoke test of a running data-cache service, with nothing but the standard library.

    python3 smoke.py [BASE_URL]     (default http://127.0.0.1:8000)

Waits for /ready, then checks the endpoints a client relies on: the sample item twice (a cache
miss or hit, then a hit once Redis holds it), a malformed ID and an unknown one. Exit 0 when all
pass, 1 with the failing check otherwise. Use it after `docker compose up`, a deployment, or a
port-forward.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

SAMPLE_DATA_ID = "digit-0000.png"
READY_SECONDS = 60
# The first answer caches the item in the background; the next ones may come a moment later.
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


def second_answer_is_a_hit(base: str) -> bool:
    """Ask for the sample item until the cache has it (or HIT_SECONDS pass)."""
    deadline = time.monotonic() + HIT_SECONDS
    while time.monotonic() < deadline:
        status, answer = call(base, "/predict", {"data": SAMPLE_DATA_ID})
        if status == 200 and answer["cache"] == "hit":
            return True
        time.sleep(0.2)
    return False


def check(base: str) -> None:
    """The checks, in the order a client meets them."""
    ready = wait_ready(base)
    expect(call(base, "/health")[0] == 200, "GET /health is 200")
    status, meta = call(base, "/metadata")
    expect(status == 200 and len(meta["model_sha256"]) == 64, "GET /metadata names the model")
    status, scores = call(base, "/predict", {"data": SAMPLE_DATA_ID})
    expect(status == 200 and len(scores["prediction"]) == 1, "POST /predict scores the item")
    status, labels = call(base, "/predict/label", {"data": SAMPLE_DATA_ID})
    names = set(meta["labels"])
    expect(status == 200 and set(labels["prediction"]) <= names, "POST /predict/label labels it")
    if ready["cache"] == "ok":
        expect(second_answer_is_a_hit(base), "the cache serves the item again")
    else:
        print(f"--  cache {ready['cache']}: answers are uncached (is Redis running?)")
    status, _ = call(base, "/predict", {"data": "../etc/passwd"})
    expect(status == 422, "POST /predict refuses a path with 422")
    status, _ = call(base, "/predict", {"data": "no-such-item.png"})
    expect(status == 404, "POST /predict answers 404 for an unknown ID")


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
