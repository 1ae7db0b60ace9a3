"""API keys: a request that is not a read needs a valid key; reads need none."""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Iterator
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from src.app.config import DATA_SAMPLE, Settings, SettingsError
from src.app.main import create_app
from src.app.security import HEADER, key_digest

KEY = secrets.token_hex(32)
# A second key, as while a new key replaces an old one.
OLD_KEY = secrets.token_hex(32)
BODY = {"data": DATA_SAMPLE}


@pytest.fixture(scope="module", params=[True, False], ids=["fast-path", "framework"])
def guarded(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """A client of the service with two API keys, its fast path on and off."""
    settings = replace(
        Settings.from_env(),
        fast_path=request.param,
        api_key_digests=(key_digest(KEY), key_digest(OLD_KEY)),
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def test_a_request_without_a_key_is_refused(guarded: TestClient) -> None:
    for path in ("/predict", "/predict/label", "/v2/models/any/infer"):
        answer = guarded.post(path, json=BODY)
        assert answer.status_code == 401, path
        assert HEADER in answer.json()["detail"]
        assert answer.headers["www-authenticate"] == f'ApiKey header="{HEADER}"'


@pytest.mark.parametrize(
    "headers",
    [
        {HEADER: "wrong-" + "0" * 64},
        {HEADER: ""},
        {HEADER: KEY[:-1]},
        {HEADER: KEY.upper()},
        {"authorization": f"Bearer {KEY}"},
    ],
    ids=["other", "empty", "prefix", "case", "other-header"],
)
def test_a_wrong_key_is_refused(guarded: TestClient, headers: dict[str, str]) -> None:
    assert guarded.post("/predict", json=BODY, headers=headers).status_code == 401


def test_the_right_key_gets_a_real_prediction(guarded: TestClient) -> None:
    answer = guarded.post("/predict", json=BODY, headers={HEADER: KEY})
    assert answer.status_code == 200
    scores = answer.json()["prediction"]
    assert len(scores) == len(DATA_SAMPLE)
    for row in scores:
        assert math.isclose(sum(row), 1.0, abs_tol=1e-4)
    assert scores == guarded.get("/predict/test").json()["prediction"]
    labels = guarded.post("/predict/label", json=BODY, headers={HEADER: KEY})
    assert labels.json() == guarded.get("/predict/test/label").json()


def test_every_configured_key_is_accepted(guarded: TestClient) -> None:
    assert guarded.post("/predict", json=BODY, headers={HEADER: OLD_KEY}).status_code == 200


def test_reads_need_no_key(guarded: TestClient) -> None:
    for path in ("/health", "/ready", "/metadata", "/label", "/predict/test", "/openapi.json"):
        assert guarded.get(path).status_code == 200, path


def test_keys_are_read_from_the_environment() -> None:
    settings = Settings.from_env({"API_KEYS": f" {KEY} ,, {OLD_KEY} "})
    assert settings.api_key_digests == (key_digest(KEY), key_digest(OLD_KEY))
    assert Settings.from_env({}).api_key_digests == ()
    assert KEY not in repr(settings)


def test_a_short_key_is_refused_without_showing_it() -> None:
    with pytest.raises(SettingsError, match="API_KEYS: key 2 has 9 characters") as refused:
        Settings.from_env({"API_KEYS": f"{KEY},too-short"})
    assert "too-short" not in str(refused.value)


def test_without_keys_every_request_passes_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = replace(Settings.from_env(), api_key_digests=())
    with (
        caplog.at_level(logging.WARNING, logger="src.app.security"),
        TestClient(create_app(settings), raise_server_exceptions=False) as client,
    ):
        assert client.post("/predict", json=BODY).status_code == 200
    assert "API_KEYS is not set" in caplog.text
