"""``builder test-pattern``: the regression job of a pattern of your own, in one command.

The pattern is generated with its sample variables into a scratch folder, then checked as
builder's own suite checks its packaged patterns: every file renders and parses, the manifests
pass the strict Kubernetes schemas, every Dockerfile passes hadolint, and the project's own tests
pass in a fresh virtualenv. Each check reports one line as it finishes; a failed check does not
stop the ones after it, except that nothing can be checked when generating failed.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from builder_core import static_checks
from builder_core.errors import BuilderError, GeneratedFileError, InvalidInputError
from builder_core.generate import build
from builder_core.patterns import METADATA_FILE, PATTERN_NAME, pattern_names

INSTALL_TIMEOUT = 15 * 60
TESTS_TIMEOUT = 30 * 60
# How much of a failing tool's output is shown under its FAIL line.
DETAIL_LINES = 40
VENV_DIR = ".venv"
PYTEST_OUTCOME = re.compile(r"^(FAILED|ERROR) (\S+)")


@dataclass(frozen=True)
class Step:
    """One check's outcome: PASS, FAIL or SKIP, the one-line reason, and the tool's output."""

    name: str
    status: Literal["PASS", "FAIL", "SKIP"]
    reason: str
    details: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        """Whether the check failed (a skipped check follows a failed one)."""
        return self.status != "PASS"


Report = Callable[[Step], None]
Check = Callable[[Path], Step]


def run_pattern_tests(folder: Path, *, keep: Path | None = None, report: Report) -> list[Step]:
    """Generate the pattern in ``folder`` and run every check; every step, in order.

    :param folder: a pattern's folder, ``DIR/<pattern>/`` holding ``pattern.yaml``.
    :param keep: generate into this folder (new or empty) and leave the project there.
    :param report: called with each step as soon as it is done.
    :raises InvalidInputError: ``folder`` is not a pattern, or ``keep`` is not usable.
    """
    pattern = pattern_folder(folder)
    if keep is not None:
        _check_keep(keep)
    with tempfile.TemporaryDirectory(prefix="builder-test-pattern-") as scratch:
        return run_checks(pattern, keep or Path(scratch), report, kept=keep is not None)


def pattern_folder(folder: Path) -> Path:
    """``folder`` as an absolute pattern folder, or an InvalidInputError saying why it is not."""
    where = f"test-pattern {folder}"
    if not folder.is_dir():
        raise InvalidInputError(f"{where}: no such folder")
    resolved = folder.resolve()
    if not (resolved / METADATA_FILE).is_file():
        raise InvalidInputError(f"{where}: not a pattern (no {METADATA_FILE} in it)")
    if not PATTERN_NAME.fullmatch(resolved.name):
        raise InvalidInputError(
            f"{where}: {resolved.name!r} is not a pattern name (lowercase letters, digits and "
            "hyphens): rename the folder"
        )
    if resolved.name in pattern_names():
        raise InvalidInputError(
            f"{where}: a packaged pattern is named {resolved.name!r}; rename the folder"
        )
    return resolved


def _check_keep(keep: Path) -> None:
    if keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
        raise InvalidInputError(f"--keep {keep}: must be a new or empty folder")


def run_checks(pattern: Path, output: Path, report: Report, *, kept: bool) -> list[Step]:
    """Generate ``pattern`` into ``output`` and check the project; every step is reported."""
    project, steps = generate(pattern, output, kept=kept)
    checks: list[tuple[str, Check]] = [
        ("kubernetes", check_manifests),
        ("hadolint", check_dockerfiles),
        ("tests", run_project_tests),
    ]
    for step in steps:
        report(step)
    for name, check in checks:
        step = Step(name, "SKIP", "not run: generating failed")
        if project is not None:
            step = _guarded_check(name, check, project)
        report(step)
        steps.append(step)
    return steps


def _guarded_check(name: str, check: Check, project: Path) -> Step:
    """A check's step; a missing tool or a tool that cannot run is that check's failure."""
    try:
        return check(project)
    except BuilderError as err:
        return Step(name, "FAIL", str(err))
    except (OSError, subprocess.SubprocessError) as err:
        return Step(name, "FAIL", f"{type(err).__name__}: {err}")


def generate(pattern: Path, output: Path, *, kept: bool) -> tuple[Path | None, list[Step]]:
    """Generate with the pattern's sample variables: the project, and the render and parse steps.

    Generating verifies every ``.py``, YAML and JSON file in memory before writing anything.
    """
    try:
        result = build(pattern=pattern.name, pattern_path=(pattern.parent,), output_dir=output)
    except BuilderError as err:
        if isinstance(err.__cause__ or err, GeneratedFileError):
            rendered = Step("render", "PASS", "every template rendered")
            return None, [rendered, Step("parse", "FAIL", str(err))]
        skipped = Step("parse", "SKIP", "not run: rendering failed")
        return None, [Step("render", "FAIL", str(err)), skipped]
    where = str(result.target) if kept else f"{result.target.name} (--keep DIR keeps it)"
    rendered = Step("render", "PASS", f"{len(result.files)} files: {where}")
    parsed = Step("parse", "PASS", "every .py compiles, every .yaml, .yml and .json parses")
    return result.target, [rendered, parsed]


def check_manifests(project: Path) -> Step:
    """Every Kubernetes manifest against the schemas of its version, unknown fields refused."""
    documents = static_checks.manifest_documents(project)
    if not documents:
        return Step("kubernetes", "FAIL", f"no Kubernetes manifests in {project / 'manifests'}")
    problems = [
        problem for label, doc in documents for problem in static_checks.schema_problems(label, doc)
    ]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return Step("kubernetes", "FAIL", f"{problems[0]}{more}", tuple(problems))
    version = static_checks.KUBERNETES_VERSION
    reason = f"{len(documents)} documents valid for Kubernetes {version} (strict)"
    return Step("kubernetes", "PASS", reason)


def check_dockerfiles(project: Path) -> Step:
    """Every Dockerfile through hadolint: any finding fails."""
    dockerfiles = static_checks.dockerfiles(project)
    if not dockerfiles:
        return Step("hadolint", "FAIL", f"no Dockerfile in {project}")
    hadolint = static_checks.find_tool("hadolint")
    for dockerfile in dockerfiles:
        findings = static_checks.hadolint_findings(dockerfile, hadolint)
        if findings is not None:
            lines = (findings.stdout + findings.stderr).strip().splitlines()
            first = lines[0] if lines else f"exit code {findings.returncode}"
            return Step("hadolint", "FAIL", f"{first}", _tail(lines))
    names = ", ".join(str(path.relative_to(project)) for path in dockerfiles)
    return Step("hadolint", "PASS", f"no findings in {names}")


def run_project_tests(project: Path) -> Step:
    """``python -m pytest`` in the project, in a fresh virtualenv of its requirements-dev.txt."""
    python = _virtualenv(project)
    if isinstance(python, Step):
        return python
    result = static_checks.run(
        [str(python), "-m", "pytest"],
        project,
        env=static_checks.tool_environment(),
        timeout=TESTS_TIMEOUT,
    )
    lines = result.stdout.strip().splitlines()
    summary = lines[-1].strip("= ") if lines else f"exit code {result.returncode}"
    if result.returncode == 0:
        return Step("tests", "PASS", summary)
    failed = [match[2] for line in lines if (match := PYTEST_OUTCOME.match(line))]
    first = f"; first: {failed[0]}" if failed else ""
    return Step("tests", "FAIL", f"{summary}{first}", _tail(lines + result.stderr.splitlines()))


def _virtualenv(project: Path) -> Path | Step:
    """The Python of a new ``.venv`` in the project holding its pinned test requirements."""
    uv = static_checks.find_tool("uv")
    venv = project / VENV_DIR
    python = venv / "bin" / "python"
    commands = [
        [uv, "venv", "-q", "--python", sys.executable, str(venv)],
        [uv, "pip", "install", "-q", "--python", str(python), "-r", "requirements-dev.txt"],
    ]
    for command in commands:
        result = static_checks.run(
            command, project, env=static_checks.tool_environment(), timeout=INSTALL_TIMEOUT
        )
        if result.returncode != 0:
            lines = (result.stdout + result.stderr).strip().splitlines()
            last = lines[-1] if lines else f"exit code {result.returncode}"
            return Step("tests", "FAIL", f"{' '.join(command[:3])} failed: {last}", _tail(lines))
    return python


def _tail(lines: list[str]) -> tuple[str, ...]:
    return tuple(lines[-DETAIL_LINES:])
