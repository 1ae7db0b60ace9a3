"""Log lines of the service, gunicorn and uvicorn alike: JSON or text, one handler, stdout.

``logging_config`` is the ``dictConfig`` that gunicorn applies once in its master process
(``src/gunicorn_conf.py``); every worker inherits it when it is forked, so the service's own
loggers print with a time, a level and their name instead of through Python's bare fallback.
Every line written while a request is served carries that request's ID. The request log
(``src.app.observe``) writes lines of the very same shape, without going through ``logging``.

    JSON: {"time": "...", "level": "INFO", "logger": "...", "pid": 7, "message": "...", ...}
    text: 2026-01-31T12:00:00.000+00:00 [7] [INFO] logger: message key=value ...
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

# The ID of the request being served; set by src.app.observe for the time of one request.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
FORMATS = ("json", "text")
LEVELS = ("debug", "info", "warning", "error", "critical")
# A text value written as is: printable ASCII without spaces, quotes or "=" (else JSON-quoted).
PLAIN = re.compile(r"[!#-<>-~]+")


class LogSettingsError(ValueError):
    """LOG_FORMAT or LOG_LEVEL holds a value the service cannot use."""


def log_settings(environ: Mapping[str, str]) -> tuple[str, str]:
    """LOG_FORMAT (``json`` or ``text``) and LOG_LEVEL from the environment, checked."""
    fmt = environ.get("LOG_FORMAT", "text").lower()
    level = environ.get("LOG_LEVEL", "info").lower()
    if fmt not in FORMATS:
        raise LogSettingsError(f"LOG_FORMAT={fmt!r}: expected one of {', '.join(FORMATS)}")
    if level not in LEVELS:
        raise LogSettingsError(f"LOG_LEVEL={level!r}: expected one of {', '.join(LEVELS)}")
    return fmt, level


class _Clock:
    """UTC timestamps in ISO 8601 with milliseconds; the part up to the second is reused."""

    def __init__(self) -> None:
        # One tuple, replaced whole: a thread never sees one second's prefix with another's key.
        self._cached = (-1, "")

    def iso(self, when: float) -> str:
        second = int(when)
        cached_second, prefix = self._cached
        if second != cached_second:
            prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._cached = (second, prefix)
        return prefix + _MILLISECONDS[int((when - second) * 1000)]


# ".000+00:00" to ".999+00:00": looked up, not formatted, for every line.
_MILLISECONDS = [f".{milliseconds:03d}+00:00" for milliseconds in range(1000)]
CLOCK = _Clock()


def json_line(
    when: float, level: str, logger: str, pid: int, message: str, fields: dict[str, Any]
) -> str:
    """One log line as a JSON object."""
    head = {"time": CLOCK.iso(when), "level": level, "logger": logger, "pid": pid}
    return orjson.dumps({**head, "message": message, **fields}, default=str).decode()


def text_line(
    when: float, level: str, logger: str, pid: int, message: str, fields: dict[str, Any]
) -> str:
    """One log line as text, the fields as ``key=value`` (quoted when they need it)."""
    pairs = "".join(f" {key}={text_value(value)}" for key, value in fields.items())
    return f"{CLOCK.iso(when)} [{pid}] [{level}] {logger}: {message}{pairs}"


def text_value(value: Any) -> str:
    """``value`` as a text field's value: as is when plain, else quoted with JSON escapes."""
    text = str(value)
    # Quoted (JSON string escapes) when a value could be mistaken for another field or line.
    return text if PLAIN.fullmatch(text) else orjson.dumps(text).decode()


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The request ID and the structured fields a caller passed as ``extra={"fields": {...}}``."""
    fields: dict[str, Any] = {}
    request_id = REQUEST_ID.get()
    if request_id is not None:
        fields["request_id"] = request_id
    extra = getattr(record, "fields", None)
    if isinstance(extra, dict):
        fields.update(extra)
    return fields


class JsonFormatter(logging.Formatter):
    """``json_line`` for a log record; a traceback goes into ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        return json_line(
            record.created,
            record.levelname,
            record.name,
            record.process or 0,
            record.getMessage(),
            fields,
        )


class TextFormatter(logging.Formatter):
    """``text_line`` for a log record; a traceback follows on the lines below."""

    def format(self, record: logging.LogRecord) -> str:
        line = text_line(
            record.created,
            record.levelname,
            record.name,
            record.process or 0,
            record.getMessage(),
            _fields(record),
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def logging_config(fmt: str, level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` sending every logger to stdout in ``fmt``."""
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"service": {"()": formatter}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "service",
                "stream": "ext://sys.stdout",
            }
        },
        "root": {"level": level.upper(), "handlers": ["stdout"]},
        "loggers": {
            # uvicorn's error logger takes gunicorn's handlers, so it prints through this one too.
            "gunicorn.error": {"level": level.upper(), "handlers": ["stdout"], "propagate": False},
            # The request log (src.app.observe) is the access log: a handler here would make
            # uvicorn write a second, slower line for every request.
            "gunicorn.access": {"handlers": [], "propagate": False},
        },
    }
