"""GET /predictions/{id} answers from what the job published in PostgreSQL."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pyspark.sql import SparkSession

from src.app.config import MODEL_SHA256, Settings
from src.app.main import create_app
from src.batch import job
from src.batch.settings import BatchSettings
from tests.batch.conftest import RUN_DATE

MakeSettings = Callable[..., BatchSettings]


def client_for(url: str) -> TestClient:
    settings = dataclasses.replace(Settings.from_env(), database_url=url)
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture
def published(
    spark: SparkSession, sample_input: Path, clean_database: str, make_settings: MakeSettings
) -> Iterator[TestClient]:
    """A client of the service after one run published the sample data set."""
    job.run_date(spark, make_settings(sample_input, clean_database), RUN_DATE)
    with client_for(clean_database) as client:
        yield client


def test_a_published_row_is_answered_with_its_run_and_model(published: TestClient) -> None:
    answer = published.get("/predictions/1")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["id"] == "1"
    assert body["run_date"] == RUN_DATE.isoformat()
    assert body["model_sha256"] == MODEL_SHA256
    assert body["label"] in published.get("/label").json().values()
    assert body["score"] == pytest.approx(max(body["scores"]))


def test_a_run_date_can_be_asked_for(published: TestClient) -> None:
    assert published.get(f"/predictions/1?date={RUN_DATE.isoformat()}").status_code == 200
    missing = published.get("/predictions/1?date=2001-01-01")
    assert missing.status_code == 404
    assert "2001-01-01" in missing.json()["detail"]


def test_an_unknown_id_is_404(published: TestClient) -> None:
    assert published.get("/predictions/no-such-row").status_code == 404


def test_a_bad_date_is_422_naming_it(published: TestClient) -> None:
    answer = published.get("/predictions/1?date=yesterday")
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["query", "date"]


def test_no_run_yet_is_404(clean_database: str) -> None:
    with client_for(clean_database) as client:
        assert client.get("/predictions/1").status_code == 404


def test_a_database_that_is_down_is_503_and_the_model_still_answers() -> None:
    with client_for("postgresql://reader:secret@127.0.0.1:9/none") as client:
        answer = client.get("/predictions/1")
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "5"
        assert "secret" not in answer.text
        assert client.get("/predict/test").status_code == 200
