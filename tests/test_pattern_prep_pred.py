"""The prep-pred pattern for real: both services started with their own scripts on 127.0.0.1.

The prediction service with run.sh and the prep service with run-prep.sh (two workers each), the
sample images uploaded to the prep service; then the prediction service stopped under it and
started again. The generated project's own tests (run by test_service.py) cover the prep
service's failures in depth in one process.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, free_port
from test_service import Server, call, start, wait_ready

pytestmark = pytest.mark.slow

PATTERN = "prep-pred"
REFERENCE = json.loads((REPO / "sample_models" / "digits" / "reference.json").read_text())


def upload(base: str, path: str, data: bytes) -> tuple[int, Any, dict[str, str]]:
    """POST ``data`` as a PNG; the status, the decoded answer and the headers."""
    request = urllib.request.Request(
        f"{base}{path}", data=data, headers={"content-type": "image/png"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null"), dict(err.headers)


class Pair:
    """The prediction service and the prep service in front of it, each on a free port."""

    def __init__(self, project: Path, python: Path) -> None:
        self.project = project
        self.python = python
        self.pred_port = free_port()
        self.pred_url = f"http://127.0.0.1:{self.pred_port}"
        prep_port = free_port()
        self.prep_url = f"http://127.0.0.1:{prep_port}"
        self.pred = self.start_pred()
        self.prep = start(
            project, python, prep_port, "run-prep.sh", PRED_URL=self.pred_url, PRED_RETRIES="1"
        )
        wait_ready(self.prep_url, self.prep)

    def start_pred(self) -> Server:
        """(Re)start the prediction service on its port; return once it is ready."""
        server = start(self.project, self.python, self.pred_port)
        wait_ready(self.pred_url, server)
        return server

    def stop(self) -> None:
        """Stop both."""
        self.prep.stop()
        self.pred.stop()


@pytest.fixture(scope="module")
def project(generated_project: Callable[[str], Path]) -> Path:
    """The pattern generated with its default variables."""
    return generated_project(PATTERN)


@pytest.fixture(scope="module")
def pair(project: Path, service_python: Callable[[Path], Path]) -> Iterator[Pair]:
    """Both services, started for the module."""
    running = Pair(project, service_python(project))
    try:
        yield running
    finally:
        running.stop()


def test_uploaded_samples_are_predicted_as_the_rows_are(pair: Pair, project: Path) -> None:
    samples = sorted((project / "samples").glob("*.png"))
    assert len(samples) >= 3
    status, scores, _ = upload(pair.prep_url, "/predict", samples[0].read_bytes())
    assert status == 200, scores
    # The training framework's scores of the first sample, preprocessed as it was in training.
    assert scores["prediction"][0] == pytest.approx(REFERENCE["prediction_sample"][0], abs=1e-4)
    for sample in samples:
        status, label, _ = upload(pair.prep_url, "/predict/label", sample.read_bytes())
        assert status == 200, label
        status, scores, _ = upload(pair.prep_url, "/predict", sample.read_bytes())
        best = max(range(len(scores["prediction"][0])), key=scores["prediction"][0].__getitem__)
        assert label["prediction"] == [str(best)]


def test_what_is_not_an_image_is_422(pair: Pair) -> None:
    status, answer, _ = upload(pair.prep_url, "/predict", b"GIF89a but not really")
    assert status == 422
    assert answer["detail"].startswith("body: ")


def test_the_prediction_service_stopped_and_started_again(pair: Pair, project: Path) -> None:
    image = (project / "samples" / "digit-0000.png").read_bytes()
    pair.pred.stop()
    status, answer, headers = upload(pair.prep_url, "/predict", image)
    assert status == 503, answer
    assert "unavailable after 2 attempts" in answer["detail"]
    assert headers.get("retry-after") == "1"
    assert call(f"{pair.prep_url}/ready")[1]["prediction_service"] == "unavailable"
    pair.pred = pair.start_pred()
    status, answer, _ = upload(pair.prep_url, "/predict", image)
    assert status == 200, answer
    assert "Traceback" not in pair.prep.output()


def test_compose_and_manifests_wire_prep_to_the_prediction_service(project: Path) -> None:
    compose = yaml.safe_load((project / "docker-compose.yml").read_text())
    prep = compose["services"]["prep"]
    assert prep["command"] == ["./run-prep.sh"]
    assert (
        prep["environment"]["PRED_URL"]
        == f"http://api:{compose['services']['api']['environment']['PORT']}"
    )
    assert prep["depends_on"]["api"]["condition"] == "service_healthy"
    deployment = yaml.safe_load((project / "manifests" / "prep-deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["./run-prep.sh"]
    env = {item["name"]: item["value"] for item in container["env"]}
    service = yaml.safe_load((project / "manifests" / "service.yaml").read_text())
    assert (
        env["PRED_URL"]
        == f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    )
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
