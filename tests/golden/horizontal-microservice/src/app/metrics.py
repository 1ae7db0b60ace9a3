"""Prometheus metrics of the service, added up across gunicorn's workers.

Under run.sh every worker writes its numbers to its own files in ``PROMETHEUS_MULTIPROC_DIR``
(prometheus_client's multiprocess mode) and ``GET /metrics`` adds up the files of all of them, so
a scrape that reaches any worker sees the whole service. Without that variable (the tests, one
process under plain uvicorn) the numbers live in the process.

Writing to those files costs about a microsecond and a half per value, five values per request:
more than the rest of the observability together. So a request only adds to this worker's
:data:`TALLY` (plain Python, under a lock), and the tally is published to prometheus_client every
half second (``src.app.observe``), when the worker stops, and before every scrape it answers.
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_left

import onnxruntime as ort
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from src.app import config
from src.ml.classifier import Classifier

PLATFORM = "onnxruntime_onnx"
# Fine below a millisecond: a small model answers a small request in a fraction of one.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class BulkHistogram(Histogram):
    """A histogram that also takes many observations at once, already sorted into its buckets."""

    def observe_counts(self, counts: list[int], total: float) -> None:
        """Add ``counts[i]`` observations to bucket ``i`` (the last is +Inf), summing ``total``.

        prometheus_client's own ``observe`` takes one value; this writes each bucket once.
        It uses the same (private) values ``observe`` does: the version is pinned.
        """
        self._raise_if_not_observable()
        self._sum.inc(total)
        for bucket, count in zip(self._buckets, counts, strict=True):
            if count:
                bucket.inc(count)


REQUESTS = Counter(
    "http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
REQUEST_SECONDS = BulkHistogram(
    "http_request_duration_seconds",
    "Seconds from a request's arrival to the end of its answer, by method and route template.",
    ["method", "route"],
    buckets=BUCKETS,
)
RPCS = Counter(
    "grpc_requests",
    "gRPC calls answered, by method and status code.",
    ["method", "code"],
)
RPC_SECONDS = BulkHistogram(
    "grpc_request_duration_seconds",
    "Seconds from a gRPC call's arrival to its answer, by method.",
    ["method"],
    buckets=BUCKETS,
)
INFERENCE_SECONDS = BulkHistogram(
    "model_inference_duration_seconds",
    "Seconds ONNX Runtime took to score the rows of one request.",
    buckets=BUCKETS,
)
MODEL_INFO = Gauge(
    "model_info",
    "The model this service serves (always 1; the labels say which).",
    ["name", "version", "platform", "runtime_version", "file", "sha256"],
    # One series for the service, not one per worker; a dead worker's value is dropped.
    multiprocess_mode="livemax",
)


def record_model(classifier: Classifier) -> None:
    """Publish which model this worker loaded (its sha256 is what tells two models apart)."""
    MODEL_INFO.labels(
        config.SERVICE_NAME,
        config.SERVICE_VERSION,
        PLATFORM,
        ort.__version__,
        classifier.model_path.name,
        classifier.sha256,
    ).set(1)


class Series:
    """Durations not yet published: how many, their sum, and how many fell in each bucket."""

    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        # The last one is +Inf.
        self.buckets = [0] * (len(BUCKETS) + 1)


class Tally:
    """What this worker served since the last publication."""

    def __init__(self) -> None:
        # The event loop records; a test client's loop runs in a thread of its own.
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], Series] = {}
        self._rpcs: dict[tuple[str, str], Series] = {}
        self._inference = Series()

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One answered request."""
        key = (method, route, status)
        with self._lock:
            series = self._requests.get(key)
            if series is None:
                series = self._requests[key] = Series()
            _add(series, seconds)

    def rpc(self, method: str, code: str, seconds: float) -> None:
        """One answered gRPC call."""
        with self._lock:
            series = self._rpcs.get((method, code))
            if series is None:
                series = self._rpcs[method, code] = Series()
            _add(series, seconds)

    def inference(self, seconds: float) -> None:
        """One inference."""
        with self._lock:
            _add(self._inference, seconds)

    def publish(self) -> None:
        """Hand everything tallied to prometheus_client, and start again from nothing."""
        with self._lock:
            requests, self._requests = self._requests, {}
            rpcs, self._rpcs = self._rpcs, {}
            inference, self._inference = self._inference, Series()
        for (method, route, status), series in requests.items():
            REQUESTS.labels(method, route, str(status)).inc(series.count)
            REQUEST_SECONDS.labels(method, route).observe_counts(series.buckets, series.total)
        for (method, code), series in rpcs.items():
            RPCS.labels(method, code).inc(series.count)
            RPC_SECONDS.labels(method).observe_counts(series.buckets, series.total)
        if inference.count:
            INFERENCE_SECONDS.observe_counts(inference.buckets, inference.total)


def _add(series: Series, seconds: float) -> None:
    series.count += 1
    series.total += seconds
    # bisect_left: a bucket holds values up to and including its bound, as in Prometheus.
    series.buckets[bisect_left(BUCKETS, seconds)] += 1


# One per process, like prometheus_client's registry it feeds.
TALLY = Tally()


def generate_latest() -> bytes:
    """The text exposition of every metric: of all workers when they share a metrics folder."""
    TALLY.publish()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return _generate_latest(registry)
    return _generate_latest(REGISTRY)
