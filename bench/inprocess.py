"""One POST /predict inside a worker, without HTTP: the generated app against the bare one.

    python bench/inprocess.py [--calls 20000]

Generates the web-single service (iris model), then, in a child process with the service's own
virtualenv and uvloop, calls its ASGI application directly (started through its lifespan) with a
one-row POST /predict, and the bare app (bench/bare_asgi.py) the same way: microseconds per call,
the best of 3 runs of ``--calls`` calls. Then the same for the generated app with one part of the
path at a time replaced by nothing (ablations), which says what each part costs where it runs:
the answer's NaN check, the metrics tally, the request ID, the checks before parsing, and the
model wrapper (feeds, scores) against a bare ``session.run``. The service's features stay on in
the service: this only measures them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from serving import generated_server

ROOT = Path(__file__).resolve().parent
CHILD = r"""
import asyncio, os, sys, time
import numpy as np
import uvloop

BODY = b'{"data": [[5.1, 3.5, 1.4, 0.2]]}'
CALLS = int(sys.argv[1])


def scope():
    headers = [(b"host", b"x"), (b"content-type", b"application/json"),
               (b"content-length", str(len(BODY)).encode())]
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": "/predict", "raw_path": b"/predict", "query_string": b"",
            "root_path": "", "headers": headers, "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 8000), "state": {}}


async def per_call(app):
    sent = []

    async def receive():
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message):
        sent.append(message)

    for _ in range(2000):
        await app(scope(), receive, send)
    assert sent[-2]["status"] == 200, sent[-1]
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        for _ in range(CALLS):
            await app(scope(), receive, send)
        best = min(best, (time.perf_counter() - began) / CALLS)
    return best * 1e6


async def started(app):
    inbox, outbox = asyncio.Queue(), asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    lifespan = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    asyncio.ensure_future(app(lifespan, inbox.get, outbox.put))
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    return app


async def main():
    sys.path.insert(0, os.environ["BARE_DIR"])
    from bare_asgi import app as bare
    sys.path.insert(0, os.getcwd())
    from src.app import fast, metrics, observe
    from src.app.main import create_app
    from src.ml import classifier

    app = await started(create_app())
    full = await per_call(app)
    print(f"| bare ASGI app | {await per_call(bare):.1f} | |")
    print(f"| generated app, everything on | {full:.1f} | |")
    model = app.state.classifier
    session = model._session

    def bare_predict(rows):
        return session.run(None, {"input": np.asarray(rows, dtype=np.float32)})[1]

    parts = {
        "the answer's NaN check (classifier.finite)": [(classifier, "finite", lambda a, w: a)],
        "the metrics tally (request and inference)": [
            (metrics.TALLY, "request", lambda *a: None),
            (metrics.TALLY, "inference", lambda *a: None),
        ],
        "the request ID (observe.request_id_of)": [(observe, "request_id_of", lambda s: b"0")],
        "the checks before parsing (content type, UTF-8, rows)": [
            (fast, "content_type_problem", lambda s: None),
            (fast, "not_utf8", lambda b: False),
            (fast, "surely_too_many_rows", lambda *a: None),
        ],
        "the model wrapper (feeds, scores, NaN check)": [(model, "predict", bare_predict)],
    }
    for name, swaps in parts.items():
        saved = [(owner, attribute, getattr(owner, attribute)) for owner, attribute, _ in swaps]
        for owner, attribute, stand_in in swaps:
            setattr(owner, attribute, stand_in)
        without = await per_call(app)
        for owner, attribute, original in saved:
            setattr(owner, attribute, original)
        print(f"| without {name} | {without:.1f} | {full - without:.1f} |")


uvloop.run(main())
"""


def main() -> None:
    """Generate the service, then time both apps in its virtualenv."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    server = generated_server(18331)
    python = Path(server.env["PATH"].split(":")[0]) / "python"
    env = {
        "PATH": server.env["PATH"],
        "BARE_DIR": str(ROOT),
        "MODEL_FILEPATH": str(ROOT.parent / "sample_models" / "iris" / "model.onnx"),
        "GRPC_PORT": "0",
    }
    print("| app | µs per call (best of 3) | µs the part costs |\n|---|---|---|", flush=True)
    subprocess.run([str(python), "-c", CHILD, str(args.calls)], cwd=server.cwd, env=env, check=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
