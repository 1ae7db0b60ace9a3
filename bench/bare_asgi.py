"""The practical ceiling: a bare ASGI app doing only ONNX Runtime inference per request.

No framework, no validation beyond what numpy does: what serving this model can cost at least.
Started by bench/serving.py with the same gunicorn + uvicorn workers as the generated service.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson

_options = ort.SessionOptions()
_options.intra_op_num_threads = 1
_options.inter_op_num_threads = 1
_SESSION = ort.InferenceSession(os.environ["MODEL_FILEPATH"], _options)
_INPUT = _SESSION.get_inputs()[0].name
_OUTPUTS = ["probabilities"]
_HEADERS = [(b"content-type", b"application/json")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """POST any path with {"data": rows} → {"prediction": scores}; GET → 200 (readiness)."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["method"] == "GET":
        payload = b'{"ready":true}'
    else:
        rows = np.asarray(orjson.loads(body)["data"], dtype=np.float32)
        scores = _SESSION.run(_OUTPUTS, {_INPUT: rows})[0]
        payload = orjson.dumps({"prediction": scores}, option=orjson.OPT_SERIALIZE_NUMPY)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": payload})
