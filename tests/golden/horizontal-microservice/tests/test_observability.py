"""Request IDs, Prometheus metrics, the request log and the logging setup.

Metrics are counted in the test process (no PROMETHEUS_MULTIPROC_DIR): each test reads the
counters before and after its own requests, so the other tests' requests do not matter.
"""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry import trace
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import Receive, Scope, Send

from src import gunicorn_conf
from src.app import config
from src.app.config import Settings, SettingsError
from src.app.logs import REQUEST_ID, JsonFormatter, TextFormatter, log_settings, logging_config
from src.app.main import create_app
from src.app.observe import Observe, RequestLog

GENERATED_ID = re.compile(r"[0-9a-f]{32}")


def sample(client: TestClient, metric: str, /, **labels: str) -> float:
    """The value of one sample of /metrics (0 when it is not there yet)."""
    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == metric and all(found.labels.get(k) == v for k, v in labels.items()):
                return float(found.value)
    return 0.0


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/health"), ("GET", "/v2/health/live"), ("POST", "/predict"), ("GET", "/nowhere")],
)
def test_the_request_id_is_echoed_on_every_answer(
    client: TestClient, method: str, path: str
) -> None:
    # POST /predict with an empty object: refused by the fast path where there is one.
    response = client.request(method, path, json={}, headers={"X-Request-ID": "trace-42.a/b"})
    assert response.headers["x-request-id"] == "trace-42.a/b"


@pytest.mark.parametrize("sent", [None, "", "two words", "x" * 129, 'quote"d', "ünïcode"])
def test_a_missing_or_unusable_request_id_is_replaced(client: TestClient, sent: str | None) -> None:
    headers = {} if sent is None else {"X-Request-ID": sent.encode("latin-1")}
    first = client.get("/health", headers=headers).headers["x-request-id"]
    second = client.get("/health", headers=headers).headers["x-request-id"]
    assert GENERATED_ID.fullmatch(first)
    assert first != second


def test_requests_are_counted_by_route_and_status(client: TestClient) -> None:
    labels = {"method": "GET", "route": "/v2/health/live", "status": "200"}
    before = sample(client, "http_requests_total", **labels)
    timed = sample(
        client, "http_request_duration_seconds_count", method="GET", route=labels["route"]
    )
    for _ in range(5):
        client.get("/v2/health/live")
    assert sample(client, "http_requests_total", **labels) == before + 5
    after = sample(
        client, "http_request_duration_seconds_count", method="GET", route=labels["route"]
    )
    assert after == timed + 5


def test_refused_predictions_are_counted_under_their_route(client: TestClient) -> None:
    labels = {"method": "POST", "route": "/predict", "status": "422"}
    before = sample(client, "http_requests_total", **labels)
    for _ in range(3):
        assert client.post("/predict", json={}).status_code == 422
    assert sample(client, "http_requests_total", **labels) == before + 3


def test_unknown_paths_share_one_label(client: TestClient) -> None:
    path = f"/no-such-page-{uuid.uuid4().hex}"
    labels = {"method": "GET", "route": "unrouted", "status": "404"}
    before = sample(client, "http_requests_total", **labels)
    assert client.get(path).status_code == 404
    assert sample(client, "http_requests_total", **labels) == before + 1
    assert path not in client.get("/metrics").text


def test_inference_is_timed(client: TestClient) -> None:
    before = sample(client, "model_inference_duration_seconds_count")
    assert client.get("/predict/test").status_code == 200
    assert sample(client, "model_inference_duration_seconds_count") == before + 1
    assert sample(client, "model_inference_duration_seconds_sum") > 0


def test_the_model_is_named_with_its_sha256(client: TestClient) -> None:
    sha256 = client.app.state.classifier.sha256
    labels = {"name": config.SERVICE_NAME, "version": config.SERVICE_VERSION, "sha256": sha256}
    assert sample(client, "model_info", platform="onnxruntime_onnx", **labels) == 1


async def _logging_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A minimal ASGI app that logs while it answers, to see the request ID in its line."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    logging.getLogger("src.test").warning("inside the request")
    status = 404 if scope["path"].startswith("/missing") else 201
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_one_request_line_per_request(
    log_format: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Request lines are INFO: LOG_LEVEL=warning would silence them (pytest's default level).
    caplog.set_level(logging.INFO, logger="src.app.requests")
    app = Observe(_logging_app, request_log="all", log_format=log_format)
    with TestClient(app) as test_client:
        test_client.get("/some/path?q=1", headers={"X-Request-ID": "line-test-1"})
    # The lines are buffered; the worker writes them at the latest when it stops.
    lines = [line for line in capsys.readouterr().out.splitlines() if "src.app.requests" in line]
    assert len(lines) == 1
    if log_format == "json":
        line = json.loads(lines[0])
        assert line["level"] == "INFO"
        assert line["request_id"] == "line-test-1"
        assert (line["method"], line["path"], line["status"]) == ("GET", "/some/path", 201)
        assert line["route"] == "unrouted"
        assert line["duration_ms"] >= 0
    else:
        assert "request_id=line-test-1" in lines[0]
        assert "status=201" in lines[0]
        assert "duration_ms=" in lines[0]


@pytest.mark.parametrize(
    ("request_log", "level"), [("off", logging.INFO), ("all", logging.WARNING)]
)
def test_no_request_lines_when_the_log_is_off(
    request_log: str,
    level: int,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(level, logger="src.app.requests")
    app = Observe(_logging_app, request_log=request_log, log_format="json")
    with TestClient(app) as test_client:
        assert test_client.get("/").headers["x-request-id"]
    assert "src.app.requests" not in capsys.readouterr().out


def test_by_default_only_refused_requests_get_a_line(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="src.app.requests")
    app = Observe(_logging_app, request_log=Settings.from_env({}).request_log, log_format="json")
    with TestClient(app) as test_client:
        test_client.get("/found", headers={"X-Request-ID": "ok-1"})
        test_client.get("/missing/page", headers={"X-Request-ID": "missing-1"})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "{" in line]
    assert [(line["request_id"], line["status"]) for line in lines] == [("missing-1", 404)]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "errors"),
        ({"REQUEST_LOG": "ALL"}, "all"),
        ({"REQUEST_LOG": "false"}, "off"),
        ({"ACCESS_LOG": "true"}, "all"),
        ({"ACCESS_LOG": "true", "REQUEST_LOG": "errors"}, "errors"),
    ],
)
def test_request_log_setting(environ: dict[str, str], expected: str) -> None:
    assert Settings.from_env(environ).request_log == expected


def test_a_bad_request_log_setting_is_refused() -> None:
    with pytest.raises(SettingsError, match="REQUEST_LOG='sometimes'"):
        Settings.from_env({"REQUEST_LOG": "sometimes"})


def test_log_lines_written_during_a_request_carry_its_id() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("src.test")
    logger.addHandler(handler)
    try:
        with TestClient(Observe(_logging_app, request_log="off", log_format="json")) as tc:
            tc.get("/", headers={"X-Request-ID": "inner-7"})
    finally:
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert (line["message"], line["request_id"], line["level"]) == (
        "inside the request",
        "inner-7",
        "WARNING",
    )


def test_text_lines_quote_what_could_break_them() -> None:
    record = logging.makeLogRecord(
        {"name": "src.x", "levelname": "INFO", "msg": "hello", "fields": {"path": "/a b\nc"}}
    )
    token = REQUEST_ID.set("id-1")
    try:
        line = TextFormatter().format(record)
    finally:
        REQUEST_ID.reset(token)
    assert line.endswith(' src.x: hello request_id=id-1 path="/a b\\nc"')
    assert "\n" not in line


def test_log_settings_are_checked() -> None:
    assert log_settings({}) == ("text", "info")
    assert log_settings({"LOG_FORMAT": "JSON", "LOG_LEVEL": "Warning"}) == ("json", "warning")
    for bad in ({"LOG_FORMAT": "xml"}, {"LOG_LEVEL": "loud"}):
        with pytest.raises(ValueError, match="LOG_"):
            log_settings(bad)
    config_dict = logging_config("json", "debug")
    assert config_dict["root"]["level"] == "DEBUG"
    # No handler for gunicorn's access log: uvicorn would write a second line per request.
    assert config_dict["loggers"]["gunicorn.access"]["handlers"] == []


def test_gunicorn_hooks_retire_a_dead_worker_and_clean_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    for name in ("gauge_livemax_4242.db", "counter_4242.db", "counter_7.db"):
        (tmp_path / name).write_bytes(b"")
    gunicorn_conf.child_exit(None, SimpleNamespace(pid=4242))
    # The dead worker's live gauge is gone; its counts stay in the totals.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_4242.db", "counter_7.db"]
    gunicorn_conf.on_exit(None)
    assert not tmp_path.exists()


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_request_lines_have_the_shape_of_every_other_line(
    log_format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    log = RequestLog(log_format)
    log.add("id-9", "GET", "/x/{item}", "/x/a b", 404, 0.0015)
    log.flush()
    written = capsys.readouterr().out.rstrip("\n")
    fields = {"method": "GET", "route": "/x/{item}", "path": "/x/a b", "status": 404}
    record = logging.makeLogRecord(
        {
            "name": "src.app.requests",
            "levelname": "INFO",
            "msg": "GET /x/{item} 404",
            "created": 0.0,
            # Milliseconds, written with three decimals.
            "fields": {**fields, "duration_ms": 1.5 if log_format == "json" else "1.500"},
        }
    )
    formatter = JsonFormatter() if log_format == "json" else TextFormatter()
    token = REQUEST_ID.set("id-9")
    try:
        formatted = formatter.format(record)
    finally:
        REQUEST_ID.reset(token)
    if log_format == "json":
        line, expected = json.loads(written), json.loads(formatted)
        assert list(line) == list(expected)
        assert {**line, "time": 0} == {**expected, "time": 0}
    else:
        # Everything after the timestamp is the same.
        assert written.split(" ", 1)[1] == formatted.split(" ", 1)[1]


class RecordingTracerProvider(trace.TracerProvider):
    """A configured provider, as an OpenTelemetry SDK would install, counting its users."""

    def __init__(self) -> None:
        self.asked = 0

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        self.asked += 1
        return trace.NoOpTracer()


def test_opentelemetry_reaches_configured_providers_only_when_switched_on() -> None:
    assert Settings.from_env({}).opentelemetry is False
    provider = RecordingTracerProvider()
    # Global and set-once, like an application's own: no other test sets one.
    trace.set_tracer_provider(provider)
    traced = []
    for switched_on in (False, True):
        settings = replace(Settings.from_env(), opentelemetry=switched_on)
        before = provider.asked
        # No lifespan needed: FastAPI decides per request, before any route runs.
        TestClient(create_app(settings)).get("/health")
        traced.append(provider.asked > before)
    assert traced == [False, True]
