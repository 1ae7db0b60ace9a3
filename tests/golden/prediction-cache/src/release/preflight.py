"""Start and stop the application once, as a worker would, before any worker is swapped.

``python -m src.release.preflight APP_URI`` runs in the environment the new workers would get
and prints one JSON object: ``{"ok": true, "sha256": ...}``, or ``{"ok": false, "reason": ...}``
with the last line of what the start-up raised. The master runs it on SIGHUP, so a model that
cannot load or fails its start-up test is refused while the old workers go on serving.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from typing import Any

from gunicorn.util import import_app

from src.app.config import Settings
from src.release.state import Message

CHUNK_BYTES = 1 << 20


async def start_and_stop(app: Any) -> str | None:
    """Run the ASGI lifespan: None when start-up completed, else why it failed."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
    task = asyncio.ensure_future(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    answer = await outbox.get()
    if answer["type"] != "lifespan.startup.complete":
        await asyncio.gather(task, return_exceptions=True)
        lines = str(answer.get("message") or "start-up failed").strip().splitlines()
        return lines[-1] if lines else "start-up failed"
    await inbox.put({"type": "lifespan.shutdown"})
    await outbox.get()
    await task
    return None


def file_sha256(path: str) -> str:
    """The sha256 of the model file the new workers would load."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def check(app_uri: str) -> dict[str, Any]:
    """The verdict on the application ``app_uri`` names, in this process's environment."""
    try:
        model = Settings.from_env().model_filepath
        reason = asyncio.run(start_and_stop(import_app(app_uri)))
        if reason is None:
            return {"ok": True, "model_file": str(model), "sha256": file_sha256(str(model))}
    except Exception as err:  # the verdict is the product: whatever failed is reported
        reason = f"{type(err).__name__}: {err}"
    return {"ok": False, "reason": reason}


if __name__ == "__main__":
    print(json.dumps(check(sys.argv[1])))
