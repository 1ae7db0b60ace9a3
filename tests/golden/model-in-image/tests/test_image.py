"""The image carries the model: its checksum file, labels and tag all name the model shipped."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from src.app.config import MODEL_FILE_NAME, MODEL_SHA256, PROJECT_ROOT

MODEL_VERSION = ""
IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _label(name: str) -> str:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text(encoding="utf-8")
    found = re.search(rf'^\s*(?:LABEL\s+)?{re.escape(name)}="([^"]*)"', dockerfile, re.MULTILINE)
    assert found, f"the Dockerfile has no {name} label"
    return found.group(1)


def _image_references() -> dict[str, str]:
    """The image each deployment file runs."""
    found = {}
    for name, pattern in (
        ("Makefile", r"^IMAGE \?= (\S+)$"),
        ("docker-compose.yml", r'^\s+image: "([^"]+)"$'),
        ("manifests/deployment.yaml", r'^\s+image: "([^"]+)"$'),
    ):
        text = (PROJECT_ROOT / name).read_text(encoding="utf-8")
        match = re.search(pattern, text, re.MULTILINE)
        assert match, f"{name}: no image reference"
        found[name] = match.group(1)
    return found


def test_the_shipped_model_is_the_one_the_service_was_generated_for() -> None:
    assert _sha256(PROJECT_ROOT / "models" / MODEL_FILE_NAME) == MODEL_SHA256


def test_checksum_file_matches_the_model() -> None:
    # docker build runs sha256sum --check on this file: it must name the model, and be right.
    lines = (PROJECT_ROOT / "models" / "SHA256SUMS").read_text(encoding="utf-8").splitlines()
    sums = {path: digest for digest, path in (line.split("  ", 1) for line in lines)}
    assert f"models/{MODEL_FILE_NAME}" in sums
    for path, digest in sums.items():
        assert _sha256(PROJECT_ROOT / path) == digest, path


def test_labels_name_the_model() -> None:
    assert _label("model.sha256") == MODEL_SHA256
    assert _label("model.file") == MODEL_FILE_NAME
    assert _label("model.version") == (MODEL_VERSION or MODEL_SHA256[:12])


def test_every_image_reference_carries_the_model_version() -> None:
    version = MODEL_VERSION or MODEL_SHA256[:12]
    references = _image_references()
    assert len(set(references.values())) == 1, references
    tag = next(iter(references.values())).rsplit(":", 1)[1]
    assert tag.endswith(f"-{version}"), tag
    assert IMAGE_TAG.match(tag), f"{tag!r} is not a valid image tag"
    assert _label("org.opencontainers.image.version") == tag
