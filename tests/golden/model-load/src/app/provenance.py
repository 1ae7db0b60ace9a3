"""Which model the service must serve, where it came from, and the start-up check of both.

The loader verified the model when it fetched it; the server checks it again before loading it, so
a model that is missing, cut short or another one is never served: the worker stops, and /ready
never turns 200.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from src.app import config
from src.app.config import SettingsError
from src.app.schemas import MetadataResponse
from src.loader import redact
from src.ml.classifier import ModelLoadError

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class ModelSource:
    """The URI the model was loaded from (MODEL_URI) and the sha256 it must have (MODEL_SHA256)."""

    uri: str
    sha256: str

    @property
    def shown_uri(self) -> str:
        """The URI without its credentials: what /metadata and the logs show."""
        return redact(self.uri)

    @classmethod
    def from_env(
        cls, model_filepath: Path, environ: Mapping[str, str] | None = None
    ) -> ModelSource:
        """Read the source; without MODEL_URI the model is the local file itself."""
        env = os.environ if environ is None else environ
        raw = env.get("MODEL_SHA256") or config.MODEL_SHA256
        sha256 = raw.strip().lower()
        if not SHA256_HEX.match(sha256):
            raise SettingsError(f"MODEL_SHA256={raw!r}: expected 64 hexadecimal digits")
        return cls(env.get("MODEL_URI") or model_filepath.resolve().as_uri(), sha256)

    def verify(self, path: Path) -> None:
        """Raise ModelLoadError unless ``path`` is a file whose sha256 is the expected one."""
        try:
            digest = file_sha256(path)
        except FileNotFoundError:
            raise ModelLoadError(
                f"{path}: model not found (the model loader, python -m src.loader, puts it there)"
            ) from None
        except OSError as err:
            raise ModelLoadError(f"{path}: cannot read the model: {err}") from err
        if digest != self.sha256:
            raise ModelLoadError(
                f"{path}: checksum mismatch: its sha256 is {digest}, MODEL_SHA256 is {self.sha256}"
            )


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in chunks (a model may be larger than what fits twice)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


class SourcedMetadataResponse(MetadataResponse):
    """The inventory, plus the URI the model was loaded from."""

    model_uri: str


def get_source(request: Request) -> ModelSource:
    """The model source read at start-up."""
    source: ModelSource = request.app.state.source
    return source


SourceDep = Annotated[ModelSource, Depends(get_source)]
