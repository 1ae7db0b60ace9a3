#!/usr/bin/env python3
"""Smoke test of a running batch service, with nothing but the standard library.

    python3 smoke.py [BASE_URL]     (default http://127.0.0.1:8000)

Waits for /ready, checks the endpoints a client relies on, then waits for the batch job's first run
to be published and reads one of its predictions. Exit 0 when all pass, 1 with the failed check.
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
# The batch job may still be running (docker compose up starts it beside the service).
PUBLISHED_SECONDS = 600


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


def wait_published(base: str, row_id: str) -> dict[str, Any]:
    """Poll GET /predictions/{row_id} until a run has published it; its answer."""
    deadline = time.monotonic() + PUBLISHED_SECONDS
    while time.monotonic() < deadline:
        status, answer = call(base, f"/predictions/{row_id}")
        if status == 200:
            return dict(answer)
        if status not in (404, 503):
            raise SmokeError(f"GET /predictions/{row_id} answered {status}: {answer}")
        time.sleep(2)
    raise SmokeError(f"no run published row {row_id} within {PUBLISHED_SECONDS} s")


def check(base: str) -> None:
    """The checks, in the order a client meets them."""
    wait_ready(base)
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
    published = wait_published(base, "0")
    expect(
        published["model_sha256"] == meta["model_sha256"],
        "GET /predictions/0 was made by this model",
    )
    expect(published["label"] in meta["labels"], "GET /predictions/0 has a label")
    status, _ = call(base, "/predictions/no-such-row")
    expect(status == 404, "GET /predictions/{unknown id} is 404")


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
