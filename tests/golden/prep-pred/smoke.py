#!/usr/bin/env python3
"""Smoke test of a running prep-pred service, with nothing but the standard library.

    python3 smoke.py [BASE_URL]     (default http://127.0.0.1:8000)

Waits for /ready of both services, then checks the prediction service's endpoints and the prep
service's: a sample image uploaded to it is labelled, and what is not an image is refused with 422.
Exit 0 when all pass, 1 with the failing check otherwise. Use it after `docker compose up`, a
deployment, or a port-forward of both services:

    python3 smoke.py [PREDICTION_URL [PREP_URL]]   (default http://127.0.0.1:8000 and :8080)
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

SAMPLE = [
    [
        0.0,
        0.0,
        0.0,
        0.0,
        0.007843137718737125,
        0.21568627655506134,
        0.6901960968971252,
        0.7764706015586853,
        0.4431372582912445,
        0.1764705926179886,
        0.0470588244497776,
        0.003921568859368563,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0117647061124444,
        0.05882352963089943,
        0.2862745225429535,
        0.7137255072593689,
        0.7568627595901489,
        0.4000000059604645,
        0.13725490868091583,
        0.0313725508749485,
        0.003921568859368563,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.003921568859368563,
        0.05098039284348488,
        0.1882352977991104,
        0.43529412150382996,
        0.7450980544090271,
        0.7019608020782471,
        0.30980393290519714,
        0.062745101749897,
        0.0117647061124444,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.003921568859368563,
        0.11764705926179886,
        0.38823530077934265,
        0.6000000238418579,
        0.6745098233222961,
        0.5254902243614197,
        0.1921568661928177,
        0.01568627543747425,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.007843137718737125,
        0.20392157137393951,
        0.6352941393852234,
        0.7529411911964417,
        0.5176470875740051,
        0.2705882489681244,
        0.0784313753247261,
        0.003921568859368563,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.007843137718737125,
        0.03921568766236305,
        0.2980392277240753,
        0.7843137383460999,
        0.8509804010391235,
        0.46666666865348816,
        0.1882352977991104,
        0.08235294371843338,
        0.03921568766236305,
        0.019607843831181526,
        0.003921568859368563,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.027450980618596077,
        0.11764705926179886,
        0.40392157435417175,
        0.8392156958580017,
        0.8901960849761963,
        0.5490196347236633,
        0.3019607961177826,
        0.21176470816135406,
        0.14901961386203766,
        0.09019608050584793,
        0.04313725605607033,
        0.0117647061124444,
        0.003921568859368563,
        0.0,
        0.0,
        0.003921568859368563,
        0.05882352963089943,
        0.21568627655506134,
        0.5137255191802979,
        0.8745098114013672,
        0.9254902005195618,
        0.6666666865348816,
        0.4627451002597809,
        0.3803921639919281,
        0.3450980484485626,
        0.34117648005485535,
        0.2705882489681244,
        0.13333334028720856,
        0.0470588244497776,
        0.0117647061124444,
        0.0,
        0.003921568859368563,
        0.09019608050584793,
        0.3176470696926117,
        0.615686297416687,
        0.9019607901573181,
        0.9490196108818054,
        0.7647058963775635,
        0.6039215922355652,
        0.529411792755127,
        0.5843137502670288,
        0.7215686440467834,
        0.6509804129600525,
        0.37254902720451355,
        0.15294118225574493,
        0.03921568766236305,
        0.003921568859368563,
        0.003921568859368563,
        0.0941176488995552,
        0.3333333432674408,
        0.6274510025978088,
        0.8901960849761963,
        0.8941176533699036,
        0.6549019813537598,
        0.48235294222831726,
        0.43529412150382996,
        0.5529412031173706,
        0.800000011920929,
        0.8039215803146362,
        0.5411764979362488,
        0.27450981736183167,
        0.07450980693101883,
        0.003921568859368563,
        0.003921568859368563,
        0.07058823853731155,
        0.25882354378700256,
        0.5372549295425415,
        0.8274509906768799,
        0.7686274647712708,
        0.3803921639919281,
        0.14901961386203766,
        0.12941177189350128,
        0.27450981736183167,
        0.5803921818733215,
        0.7058823704719543,
        0.6039215922355652,
        0.3843137323856354,
        0.11372549086809158,
        0.007843137718737125,
        0.003921568859368563,
        0.04313725605607033,
        0.16078431904315948,
        0.40392157435417175,
        0.7333333492279053,
        0.7215686440467834,
        0.3764705955982208,
        0.13725490868091583,
        0.05882352963089943,
        0.18431372940540314,
        0.5137255191802979,
        0.6705882549285889,
        0.5921568870544434,
        0.3843137323856354,
        0.11764705926179886,
        0.007843137718737125,
        0.0,
        0.0117647061124444,
        0.05098039284348488,
        0.24313725531101227,
        0.6000000238418579,
        0.7490196228027344,
        0.6431372761726379,
        0.4627451002597809,
        0.2666666805744171,
        0.3294117748737335,
        0.6392157077789307,
        0.7137255072593689,
        0.5098039507865906,
        0.27843138575553894,
        0.08235294371843338,
        0.003921568859368563,
        0.0,
        0.0,
        0.007843137718737125,
        0.11372549086809158,
        0.3843137323856354,
        0.615686297416687,
        0.7529411911964417,
        0.7254902124404907,
        0.5647059082984924,
        0.5647059082984924,
        0.7098039388656616,
        0.6470588445663452,
        0.3686274588108063,
        0.1568627506494522,
        0.04313725605607033,
        0.003921568859368563,
        0.0,
        0.0,
        0.0,
        0.0313725508749485,
        0.12941177189350128,
        0.3490196168422699,
        0.6745098233222961,
        0.8549019694328308,
        0.8666666746139526,
        0.8156862854957581,
        0.7019608020782471,
        0.48235294222831726,
        0.19607843458652496,
        0.0470588244497776,
        0.0117647061124444,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.01568627543747425,
        0.21176470816135406,
        0.6196078658103943,
        0.9098039269447327,
        0.9921568632125854,
        0.9333333373069763,
        0.6941176652908325,
        0.3921568691730499,
        0.10588235408067703,
        0.003921568859368563,
        0.0,
        0.0,
    ],
]
READY_SECONDS = 60
PREP_URL = "http://127.0.0.1:8080"
# A sample upload: the first held-out digit.
SAMPLE_IMAGE = Path(__file__).resolve().parent / "samples" / "digit-0000.png"


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


def upload(base: str, path: str, data: bytes) -> tuple[int, Any]:
    """POST ``data`` as a PNG; the status and the decoded answer."""
    request = urllib.request.Request(base + path, data=data, headers={"content-type": "image/png"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def check_prep(base: str, labels: set[str]) -> None:
    """The prep service in front of the prediction service."""
    ready = wait_ready(base)
    expect(ready.get("prediction_service") == "ok", "the prep service reaches the prediction one")
    status, answer = upload(base, "/predict/label", SAMPLE_IMAGE.read_bytes())
    expect(status == 200 and set(answer["prediction"]) <= labels, "POST /predict/label labels it")
    status, answer = upload(base, "/predict", SAMPLE_IMAGE.read_bytes())
    expect(status == 200 and len(answer["prediction"][0]) == len(labels), "POST /predict scores it")
    status, _ = upload(base, "/predict", b"not an image")
    expect(status == 422, "POST /predict refuses what is not an image with 422")


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
    prep = sys.argv[2] if len(sys.argv) > 2 else PREP_URL
    check_prep(prep.rstrip("/"), set(meta["labels"]))


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
