"""The prediction service's client: a preprocessed row in, its class scores out, over V2 REST.

Every failure becomes a :class:`PredictionError` carrying the status the prep service answers and
why, so that a client of the prep service never sees a 500 for a problem of the prediction service:

- **503**: it could not be reached (connection refused or dropped before an answer) or it answered
  503 (not ready, or too busy), on every attempt;
- **504**: it did not answer within ``PRED_TIMEOUT_MS``; not retried, as the call may still be
  running there and a retry would add to its load;
- **502**: it answered, but not with scores: another status, or a body that is not a V2 answer.

Only the 503 kind is retried: at most ``PRED_RETRIES`` more attempts, 50 ms, 100 ms, ... apart.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx2
import numpy as np
import orjson
from prometheus_client import Counter, Histogram

from src.app.metrics import BUCKETS
from src.prep.config import INPUT_DATATYPE, INPUT_NAME, SCORES_OUTPUT, PrepSettings

RETRY_PAUSE_SECONDS = 0.05
JSON_HEADERS = {"content-type": "application/json"}

CALL_SECONDS = Histogram(
    "prediction_service_call_duration_seconds",
    "Seconds from the first attempt of a call to the prediction service to its outcome.",
    ["outcome"],
    buckets=BUCKETS,
)
RETRIES = Counter(
    "prediction_service_retries",
    "Attempts repeated after the prediction service could not be reached or was busy.",
)


class PredictionError(Exception):
    """The prediction service gave no usable answer; ``status`` is what the prep service answers."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class PredictionClient:
    """One connection pool to the prediction service, per prep worker."""

    def __init__(
        self, settings: PrepSettings, transport: httpx2.AsyncBaseTransport | None = None
    ) -> None:
        self._retries = settings.retries
        self._timeout = settings.timeout_seconds
        self.url = settings.pred_url
        self.infer_path = f"/v2/models/{settings.model_name}/infer"
        self._client = httpx2.AsyncClient(
            base_url=settings.pred_url,
            timeout=settings.timeout_seconds,
            transport=transport,
            # Connections are reused across requests; a proxy in the environment is not wanted
            # between two services of one deployment.
            trust_env=False,
        )
        self._labels: list[str] | None = None

    async def scores(self, row: np.ndarray) -> list[float]:
        """The class scores of one preprocessed row."""
        request = {
            "inputs": [
                {
                    "name": INPUT_NAME,
                    "shape": [1, int(row.size)],
                    "datatype": INPUT_DATATYPE,
                    "data": row,
                }
            ],
            "outputs": [{"name": SCORES_OUTPUT}],
        }
        body = orjson.dumps(request, option=orjson.OPT_SERIALIZE_NUMPY)
        response = await self._call("POST", self.infer_path, body)
        return _scores_of(response)

    async def labels(self) -> list[str]:
        """The model's labels in score order, asked once and then kept."""
        if self._labels is None:
            self._labels = _labels_of(await self._call("GET", "/label", None))
        return self._labels

    async def check(self) -> str | None:
        """None when the prediction service is ready, else why not (one attempt, no retry)."""
        try:
            response = await self._client.get("/v2/health/ready")
        except httpx2.HTTPError as err:
            return f"{self.url}: {_what_went_wrong(err)}"
        if response.status_code != 200:
            return f"{self.url}: not ready ({response.status_code})"
        return None

    async def close(self) -> None:
        """Close the connections."""
        await self._client.aclose()

    async def _call(self, method: str, path: str, body: bytes | None) -> httpx2.Response:
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await self._attempts(method, path, body)
        except PredictionError as err:
            outcome = str(err.status)
            raise
        finally:
            CALL_SECONDS.labels(outcome).observe(time.perf_counter() - started)

    async def _attempts(self, method: str, path: str, body: bytes | None) -> httpx2.Response:
        reason = ""
        for attempt in range(self._retries + 1):
            if attempt:
                RETRIES.inc()
                await asyncio.sleep(RETRY_PAUSE_SECONDS * 2 ** (attempt - 1))
            try:
                response = await self._client.request(
                    method, path, content=body, headers=JSON_HEADERS if body else None
                )
            except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.RemoteProtocolError) as err:
                reason = _what_went_wrong(err)
                continue
            except httpx2.TimeoutException:
                raise PredictionError(
                    504, f"the prediction service did not answer within {self._timeout:g} s"
                ) from None
            except httpx2.HTTPError as err:
                reason = f"the prediction service: {_what_went_wrong(err)}"
                raise PredictionError(502, reason) from err
            if response.status_code != 503:
                return response
            reason = f"it is busy or not ready (503: {_error_text(response)})"
        tries = f"{self._retries + 1} attempt{'s' if self._retries else ''}"
        raise PredictionError(503, f"the prediction service is unavailable after {tries}: {reason}")


def _what_went_wrong(err: httpx2.HTTPError) -> str:
    detail = str(err) or "no detail"
    return f"{type(err).__name__}: {detail}"


def _error_text(response: httpx2.Response) -> str:
    """What the prediction service said, short enough for one answer."""
    try:
        payload: Any = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(payload, dict):
        message = payload.get("error", payload.get("detail", payload))
        return str(message)[:200]
    return str(payload)[:200]


def _scores_of(response: httpx2.Response) -> list[float]:
    if response.status_code != 200:
        raise PredictionError(
            502,
            f"the prediction service refused the row ({response.status_code}: "
            f"{_error_text(response)})",
        )
    try:
        outputs = response.json()["outputs"]
        [scores] = [output for output in outputs if output["name"] == SCORES_OUTPUT]
        values = [float(value) for value in scores["data"]]
    except (ValueError, KeyError, TypeError) as err:
        raise PredictionError(
            502, f"the prediction service's answer holds no {SCORES_OUTPUT!r} output: {err}"
        ) from None
    return values


def _labels_of(response: httpx2.Response) -> list[str]:
    if response.status_code != 200:
        raise PredictionError(
            502, f"the prediction service gave no labels ({response.status_code})"
        )
    try:
        mapping = response.json()
        return [str(mapping[key]) for key in sorted(mapping, key=int)]
    except (ValueError, KeyError, TypeError) as err:
        raise PredictionError(
            502, f"the prediction service's labels are malformed: {err}"
        ) from None
