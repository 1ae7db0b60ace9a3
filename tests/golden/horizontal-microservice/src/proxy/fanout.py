"""The fan-out: one request to every backend at once, each bounded by the timeout, and the merge.

Every backend is asked ``POST /predict`` with the rows the proxy validated. A backend that answers
in time with one list of scores per row is **present**; one that is down, refuses, answers
something else or is later than ``BACKEND_TIMEOUT_MS`` is **missing**, with the reason. The proxy
never waits longer than the timeout (plus the answer's own time), whatever a backend does.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx2
from prometheus_client import Histogram

from src.app.metrics import BUCKETS
from src.proxy.config import ProxySettings

JSON_HEADERS = {"content-type": "application/json"}

BACKEND_SECONDS = Histogram(
    "backend_request_duration_seconds",
    "Seconds each backend took to answer the proxy (or to fail), by backend and outcome.",
    ["backend", "outcome"],
    buckets=BUCKETS,
)


@dataclass(frozen=True)
class Outcome:
    """One backend's part of an answer: its scores, or why there are none."""

    name: str
    scores: list[list[float]] | None
    problem: str | None = None
    timed_out: bool = False


class Backends:
    """The backends and one connection pool to all of them, per proxy worker."""

    def __init__(
        self, settings: ProxySettings, transport: httpx2.AsyncBaseTransport | None = None
    ) -> None:
        self.urls = settings.backends
        self.timeout = settings.timeout_seconds
        # No proxy from the environment between the services of one deployment.
        self._client = httpx2.AsyncClient(
            timeout=settings.timeout_seconds, transport=transport, trust_env=False
        )

    async def ask_all(self, body: bytes, rows: int) -> list[Outcome]:
        """Every backend's outcome for ``body`` (``rows`` rows), in the order of the backends."""
        return list(await asyncio.gather(*(self._ask(name, body, rows) for name in self.urls)))

    async def readiness(self) -> dict[str, str]:
        """Each backend's readiness: ``ok``, or why not."""

        async def one(name: str) -> tuple[str, str]:
            try:
                response = await self._client.get(f"{self.urls[name]}/v2/health/ready")
            except httpx2.HTTPError as err:
                return name, f"{type(err).__name__}: {err}"
            code = response.status_code
            return name, "ok" if code == 200 else f"not ready ({code})"

        return dict(await asyncio.gather(*(one(name) for name in self.urls)))

    async def close(self) -> None:
        """Close the connections."""
        await self._client.aclose()

    async def _ask(self, name: str, body: bytes, rows: int) -> Outcome:
        started = time.perf_counter()
        outcome = await self._outcome(name, body, rows)
        failed = "timeout" if outcome.timed_out else "error"
        result = "ok" if outcome.scores is not None else failed
        BACKEND_SECONDS.labels(name, result).observe(time.perf_counter() - started)
        return outcome

    async def _outcome(self, name: str, body: bytes, rows: int) -> Outcome:
        try:
            response = await self._client.post(
                f"{self.urls[name]}/predict", content=body, headers=JSON_HEADERS
            )
        except httpx2.TimeoutException:
            return Outcome(name, None, f"no answer within {self.timeout:g} s", timed_out=True)
        except httpx2.HTTPError as err:
            return Outcome(name, None, f"unreachable ({type(err).__name__}: {err})")
        if response.status_code != 200:
            return Outcome(name, None, f"answered {response.status_code}: {response.text[:200]}")
        try:
            scores = _scores(response.json(), rows)
        except (ValueError, KeyError, TypeError) as err:
            return Outcome(name, None, f"answered something else than scores: {err}")
        return Outcome(name, scores)


def _scores(answer: Any, rows: int) -> list[list[float]]:
    prediction = answer["prediction"]
    if not isinstance(prediction, list) or len(prediction) != rows:
        raise ValueError(f"expected {rows} rows of scores")
    return [[float(value) for value in row] for row in prediction]


def missing(outcomes: list[Outcome]) -> dict[str, str]:
    """The backends left out of an answer, with why."""
    return {outcome.name: outcome.problem or "" for outcome in outcomes if outcome.scores is None}


def highest(outcomes: list[Outcome], rows: int) -> dict[str, Any]:
    """Per row, the backend whose last class (its "yes") scored highest, and every such score."""
    present = [outcome for outcome in outcomes if outcome.scores is not None]
    scores = [
        {outcome.name: outcome.scores[row][-1] for outcome in present if outcome.scores}
        for row in range(rows)
    ]
    winners = [max(row, key=row.__getitem__) for row in scores]
    return {"prediction": winners, "scores": scores, "missing": missing(outcomes)}


def every(outcomes: list[Outcome]) -> dict[str, Any]:
    """Every present backend's scores by name."""
    predictions = {o.name: o.scores for o in outcomes if o.scores is not None}
    return {"predictions": predictions, "missing": missing(outcomes)}
