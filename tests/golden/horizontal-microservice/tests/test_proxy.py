"""The proxy against real backends on 127.0.0.1: all up, one down, one hung, none answering."""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from src.app.config import DATA_SAMPLE, Settings
from src.app.main import create_app as create_backend
from src.proxy.config import AGGREGATIONS, BACKEND_NAMES, ProxySettings
from src.proxy.main import create_app
from tests.servers import free_port, serving, silent_listener

MODELS = Path(__file__).resolve().parents[1] / "models" / "backends"


@contextlib.contextmanager
def backend(model: Path) -> Iterator[str]:
    """A backend (the project's own rows service with ``model``) under uvicorn; its URL."""
    settings = Settings.from_env({**os.environ, "MODEL_FILEPATH": str(model)})
    with serving(create_backend(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def urls() -> Iterator[dict[str, str]]:
    """Every backend of the project, each with its own model, running for the module."""
    with contextlib.ExitStack() as stack:
        yield {
            name: stack.enter_context(backend(MODELS / f"{name}.onnx")) for name in BACKEND_NAMES
        }


@contextlib.contextmanager
def proxy(urls: dict[str, str], **overrides: str) -> Iterator[TestClient]:
    """The proxy, started through its lifespan, asking the backends at ``urls``."""
    listed = ",".join(f"{name}={url}" for name, url in urls.items())
    settings = ProxySettings.from_env({**os.environ, "BACKEND_URLS": listed, **overrides})
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def predict(client: TestClient, rows: Any) -> Any:
    """POST the rows; the client's response."""
    return client.post("/predict", json={"data": rows})


def test_every_backend_answers_and_the_highest_wins(urls: dict[str, str]) -> None:
    with proxy(urls, AGGREGATE="highest") as client:
        response = predict(client, DATA_SAMPLE)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["missing"] == {}
        assert len(answer["prediction"]) == len(DATA_SAMPLE)
        for row, winner in zip(answer["scores"], answer["prediction"], strict=True):
            assert sorted(row) == sorted(BACKEND_NAMES)
            assert winner == max(row, key=row.__getitem__)


def asked_directly(url: str, rows: Any) -> Any:
    """A backend's own answer for ``rows``, asked without the proxy."""
    request = urllib.request.Request(
        f"{url}/predict",
        data=json.dumps({"data": rows}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["prediction"]


def test_all_gives_every_backend_s_answer_as_it_gives_it(urls: dict[str, str]) -> None:
    with proxy(urls, AGGREGATE="all") as client:
        answer = predict(client, DATA_SAMPLE).json()
    assert answer["missing"] == {}
    assert sorted(answer["predictions"]) == sorted(BACKEND_NAMES)
    for name, url in urls.items():
        assert answer["predictions"][name] == asked_directly(url, DATA_SAMPLE)


def test_a_backend_down_gives_a_partial_answer_naming_it(urls: dict[str, str]) -> None:
    down = BACKEND_NAMES[0]
    with proxy({**urls, down: f"http://127.0.0.1:{free_port()}"}) as client:
        response = predict(client, DATA_SAMPLE)
        ready = client.get("/ready").json()["backends"]
    assert response.status_code == 200
    answer = response.json()
    assert list(answer["missing"]) == [down]
    assert "unreachable" in answer["missing"][down]
    assert ready[down] != "ok"
    present = answer["scores"][0] if "scores" in answer else answer["predictions"]
    assert down not in present and len(present) == len(BACKEND_NAMES) - 1


def test_a_hung_backend_is_left_out_at_the_timeout(urls: dict[str, str]) -> None:
    hung = BACKEND_NAMES[-1]
    with (
        silent_listener() as (url, _),
        proxy({**urls, hung: url}, BACKEND_TIMEOUT_MS="300") as client,
    ):
        started = time.monotonic()
        response = predict(client, DATA_SAMPLE)
        took = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["missing"] == {hung: "no answer within 0.3 s"}
    assert 0.3 <= took < 2.0


def test_no_backend_answering_is_503_naming_each(urls: dict[str, str]) -> None:
    nowhere = {name: f"http://127.0.0.1:{free_port()}" for name in urls}
    with proxy(nowhere) as client:
        response = predict(client, DATA_SAMPLE)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    for name in BACKEND_NAMES:
        assert f"{name}: unreachable" in response.json()["detail"]


def test_every_backend_hung_is_504() -> None:
    with contextlib.ExitStack() as stack:
        hung = {name: stack.enter_context(silent_listener())[0] for name in BACKEND_NAMES}
        with proxy(hung, BACKEND_TIMEOUT_MS="200") as client:
            response = predict(client, DATA_SAMPLE)
    assert response.status_code == 504
    assert "no answer within 0.2 s" in response.json()["detail"]


@pytest.mark.parametrize("body", [{"data": [[1.0]]}, {"data": [["a", 1, 2, 3]]}, {"rows": []}])
def test_bad_rows_are_refused_before_any_backend_is_asked(body: Any) -> None:
    # Backends that do not exist: a request reaching them would be a 503, not a 422.
    nowhere = {name: f"http://127.0.0.1:{free_port()}" for name in BACKEND_NAMES}
    with proxy(nowhere) as client:
        response = client.post("/predict", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "body"


def test_settings_refuse_a_bad_aggregation_and_urls() -> None:
    assert AGGREGATIONS == ("highest", "all")
    with pytest.raises(ValueError, match="AGGREGATE"):
        ProxySettings.from_env({"AGGREGATE": "mean"})
    with pytest.raises(ValueError, match="BACKEND_URLS"):
        ProxySettings.from_env({"BACKEND_URLS": "a=ftp://x"})
    with pytest.raises(ValueError, match="named twice"):
        ProxySettings.from_env({"BACKEND_URLS": "a=http://x:1,a=http://y:2"})


def test_health_readiness_and_metadata(urls: dict[str, str]) -> None:
    with proxy(urls) as client:
        assert client.get("/health").json() == {"health": "ok"}
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/health/ready").status_code == 200
        assert client.get("/ready").json() == {
            "ready": True,
            "backends": dict.fromkeys(BACKEND_NAMES, "ok"),
        }
        metadata = client.get("/metadata").json()
    assert metadata["backends"] == urls
    assert metadata["aggregate"] in AGGREGATIONS
