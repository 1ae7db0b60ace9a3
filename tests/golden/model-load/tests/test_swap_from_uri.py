"""``make reload URI=... SHA256=...``: the model is fetched by the loader, checked, then swapped."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.test_swap import NEXT_MODEL, call, service, sha256_of, swap

__all__ = ["service"]  # the fixture, imported for the tests below


def test_a_model_fetched_from_its_uri_is_swapped_in(service: str, tmp_path: Path) -> None:
    source = tmp_path / "store" / "next.onnx"
    source.parent.mkdir()
    shutil.copyfile(NEXT_MODEL, source)
    digest = sha256_of(source)
    into = ("--into", str(tmp_path))
    done = swap("--uri", source.as_uri(), "--sha256", digest, *into, state=tmp_path / "state")
    assert done.returncode == 0, done.stdout + done.stderr
    metadata = call(f"{service}/metadata")[1]
    assert (metadata["model_sha256"], metadata["model_uri"]) == (digest, source.as_uri())


def test_a_model_whose_sha256_differs_is_not_fetched_and_the_old_one_serves(
    service: str, tmp_path: Path
) -> None:
    before = call(f"{service}/metadata")[1]["model_sha256"]
    wrong = "0" * 64
    into = ("--into", str(tmp_path))
    done = swap("--uri", NEXT_MODEL.as_uri(), "--sha256", wrong, *into, state=tmp_path / "state")
    assert done.returncode != 0
    assert "the loader did not fetch" in done.stderr
    assert not list(tmp_path.glob("model-*.onnx"))
    assert call(f"{service}/metadata")[1]["model_sha256"] == before
    assert call(f"{service}/ready")[0] == 200
