"""The model-in-image pattern: the image carries the model, and its tag and labels say which.

The tag in every deployment file is ``<image_tag>-<model version>``; the Dockerfile's labels and
the checksum file its build checks (with the real ``sha256sum``) name the model's sha256; and the
running service's /metadata reports that same sha256.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, free_port

from builder_core import build

PATTERN = "model-in-image"
MODEL_NAME = "iris_svc.onnx"
SHA256 = hashlib.sha256((REPO / "sample_models" / "iris" / "model.onnx").read_bytes()).hexdigest()


def image_references(project: Path) -> dict[str, str]:
    """The image each file that builds or runs it names."""
    compose = yaml.safe_load((project / "docker-compose.yml").read_text())
    deployment = yaml.safe_load((project / "manifests" / "deployment.yaml").read_text())
    workflow = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
    build_step = next(
        step["run"] for step in workflow["jobs"]["image"]["steps"] if "docker build" in str(step)
    )
    makefile = re.search(r"^IMAGE \?= (\S+)$", (project / "Makefile").read_text(), re.MULTILINE)
    assert makefile is not None
    return {
        "docker-compose.yml": compose["services"]["api"]["image"],
        "manifests/deployment.yaml": deployment["spec"]["template"]["spec"]["containers"][0][
            "image"
        ],
        ".github/workflows/ci.yml": build_step.split()[3].strip('"'),
        "Makefile": makefile.group(1),
    }


def labels(project: Path) -> dict[str, str]:
    """The Dockerfile's LABEL keys and values."""
    text = (project / "Dockerfile").read_text().replace("\\\n", " ")
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("LABEL "):
            found.update(re.findall(r'([a-z0-9.-]+)="([^"]*)"', line))
    return found


def generate(tmp_path: Path, **variables: Any) -> Path:
    """The pattern generated with the default variables plus ``variables``."""
    values = yaml.safe_load((REPO / "vars.yaml").read_text())
    values.update(variables)
    (tmp_path / "vars.yaml").write_text(yaml.safe_dump(values))
    return build(pattern=PATTERN, variable_file=tmp_path / "vars.yaml", output_dir=tmp_path).target


def test_every_image_reference_carries_the_model_sha256(
    generated_project: Callable[[str], Path],
) -> None:
    project = generated_project(PATTERN)
    expected = f"iris-classifier:0.1.0-{SHA256[:12]}"
    assert set(image_references(project).values()) == {expected}


def test_the_labels_name_the_model(generated_project: Callable[[str], Path]) -> None:
    project = generated_project(PATTERN)
    assert labels(project) == {
        "org.opencontainers.image.title": "iris-classifier",
        "org.opencontainers.image.version": f"0.1.0-{SHA256[:12]}",
        "model.file": MODEL_NAME,
        "model.sha256": SHA256,
        "model.version": SHA256[:12],
    }


def test_a_model_version_of_your_own_names_the_tag(tmp_path: Path) -> None:
    project = generate(tmp_path, model_version="2024.05-r1", image_repository="reg.example/iris")
    assert set(image_references(project).values()) == {"reg.example/iris:0.1.0-2024.05-r1"}
    assert labels(project)["model.version"] == "2024.05-r1"
    assert labels(project)["model.sha256"] == SHA256


def test_the_build_checks_the_model_it_copies(
    generated_project: Callable[[str], Path], tmp_path: Path
) -> None:
    project = generated_project(PATTERN)
    dockerfile = (project / "Dockerfile").read_text()
    final_stage = dockerfile.rsplit("\nFROM ", 1)[1]
    copy = final_stage.index("COPY models/ models/")
    assert final_stage.index("RUN sha256sum --check --strict models/SHA256SUMS") > copy
    sums = (project / "models" / "SHA256SUMS").read_text()
    assert sums == f"{SHA256}  models/{MODEL_NAME}\n"
    command = ["sha256sum", "--check", "--strict", "models/SHA256SUMS"]
    assert subprocess.run(command, cwd=project, capture_output=True, check=False).returncode == 0
    # The same check on a copy whose model was replaced: the build would stop there.
    swapped = tmp_path / "swapped"
    shutil.copytree(project, swapped)
    (swapped / "models" / MODEL_NAME).write_bytes(b"another model")
    result = subprocess.run(command, cwd=swapped, capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "FAILED" in result.stdout


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, None


def _metadata(base: str, process: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    """/metadata once the service is ready."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the service exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(urllib.error.URLError, ConnectionError):
            if _get(f"{base}/ready")[0] == 200:
                status, found = _get(f"{base}/metadata")
                assert status == 200
                return dict(found)
        time.sleep(0.2)
    pytest.fail(f"{base}/ready was not 200 within 60 s:\n{log.read_text()}")


@pytest.mark.slow
def test_metadata_reports_the_sha256_of_the_model_in_the_image(
    generated_project: Callable[[str], Path],
    service_python: Callable[[Path], Path],
    tmp_path: Path,
) -> None:
    project = generated_project(PATTERN)
    python = service_python(project)
    port = free_port()
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("MODEL_")}
    env = {
        **inherited,
        "PATH": f"{python.parent}:{os.environ['PATH']}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKERS": "1",
    }
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(project / "run.sh")], cwd="/", env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        meta = _metadata(f"http://127.0.0.1:{port}", process, log)
    finally:
        process.terminate()
        process.wait(timeout=30)
    baked = hashlib.sha256((project / "models" / MODEL_NAME).read_bytes()).hexdigest()
    assert meta["model_sha256"] == baked == labels(project)["model.sha256"]
    assert meta["model_file"] == MODEL_NAME


def _image_tests(python: Path, project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_image.py"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_the_projects_own_image_tests_catch_a_swapped_model(
    service_python: Callable[[Path], Path], tmp_path: Path
) -> None:
    project = generate(tmp_path, model_version="v7")
    python = service_python(project)
    result = _image_tests(python, project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout
    (project / "models" / MODEL_NAME).write_bytes(b"another model")
    result = _image_tests(python, project)
    assert result.returncode != 0
    assert "test_checksum_file_matches_the_model" in result.stdout
