"""Fixtures: the application with its real model, started through its lifespan."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from src.app.config import Settings
from src.app.main import create_app


@pytest.fixture(scope="session", params=[True, False], ids=["fast-path", "framework"])
def client(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """A client of the service as configured by the environment (the shipped model by default).

    Every test runs twice: with POST /predict served by the fast path, and by FastAPI's routing
    (FAST_PATH=false); both must answer the same.
    """
    settings = replace(Settings.from_env(), fast_path=request.param)
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client
