"""Fixtures: the application with its real model, started through its lifespan."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from src.app.main import create_app


@pytest.fixture(scope="session")
def client() -> Iterator[TestClient]:
    """A client of the service as configured by the environment (the shipped model by default)."""
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client
