"""Reading published predictions from PostgreSQL (the table the batch job loads).

One connection per worker, opened on first use and reopened after a failure: the service starts
and answers POST /predict with the database down, and GET /predictions/{id} answers 503 until it
is back. Every query has a statement timeout, so a stuck database never holds a request.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from typing import Any

import psycopg
from psycopg.rows import dict_row

from src.app import config

# The table the batch job loads (src.batch.load) and its columns after id and run_date: what a
# prediction is for the model's task, then which run and model made it.
TABLE = "predictions"
PREDICTION_COLUMNS = {
    "classification": ["label", "score", "scores"],
    "regression": ["value"],
}[config.TASK]
METADATA_COLUMNS = ["model_sha256", "model_version", "run_id", "predicted_at"]
COLUMNS = ", ".join(["id", "run_date", *PREDICTION_COLUMNS, *METADATA_COLUMNS])
QUERY_LATEST = f"SELECT {COLUMNS} FROM {TABLE} WHERE id = %s ORDER BY run_date DESC LIMIT 1"
QUERY_DATE = f"SELECT {COLUMNS} FROM {TABLE} WHERE id = %s AND run_date = %s"
# user:password@ in a URL, and password=... in a key/value connection string.
SECRETS = re.compile(r"(?<=://)[^/@\s]*@|(?<=password=)\S+")


class DatabaseUnavailableError(RuntimeError):
    """PostgreSQL cannot be reached, or did not answer in time."""


def redacted(url: str) -> str:
    """``url`` with its credentials masked, for logs and /metadata."""
    return SECRETS.sub("***@", url) if "://" in url else SECRETS.sub("***", url)


class PredictionStore:
    """The predictions table of one database, read by one worker."""

    def __init__(self, url: str, timeout_seconds: float) -> None:
        self.url = url
        self.timeout_seconds = timeout_seconds
        self._connection: psycopg.AsyncConnection[dict[str, Any]] | None = None
        self._lock = asyncio.Lock()

    async def find(self, row_id: str, date: dt.date | None) -> dict[str, Any] | None:
        """The prediction for ``row_id`` of ``date`` (default: the latest run that has it)."""
        query, params = (QUERY_LATEST, (row_id,)) if date is None else (QUERY_DATE, (row_id, date))
        async with self._lock:
            try:
                connection = await self._connect()
                cursor = await connection.execute(query, params)
                return await cursor.fetchone()
            except psycopg.errors.UndefinedTable:
                # No run has been loaded yet.
                return None
            except psycopg.Error as err:
                await self._discard()
                raise DatabaseUnavailableError(_first_line(err)) from err

    async def _connect(self) -> psycopg.AsyncConnection[dict[str, Any]]:
        if self._connection is None or self._connection.closed:
            timeout_ms = int(self.timeout_seconds * 1000)
            self._connection = await psycopg.AsyncConnection.connect(
                self.url,
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=max(1, int(self.timeout_seconds)),
                # UTF8 whatever the server's encoding: text never comes back as bytes.
                options=f"-c statement_timeout={timeout_ms} -c client_encoding=UTF8",
            )
        return self._connection

    async def _discard(self) -> None:
        if self._connection is not None:
            await self._connection.close()
        self._connection = None

    async def close(self) -> None:
        async with self._lock:
            await self._discard()


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return redacted(text.splitlines()[0]) if text else type(err).__name__
