"""Patterns outside the package: --pattern-path, BUILDER_PATTERN_PATH and builder test-pattern.

Every test works on a copy of the example pattern (examples/patterns/api-key) in a temporary
folder outside the repository, as a team keeps its own patterns.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_builder
from cookiecutter.main import cookiecutter

from builder_core.errors import ToolMissingError
from builder_core.patterns import PATTERN_PATH_ENV
from builder_core.static_checks import find_tool

EXAMPLE = REPO / "examples" / "patterns" / "api-key"
PATTERN = "api-key"
# test-pattern builds a virtualenv; uv caches the wheels, but the first run downloads them.
SLOW_TIMEOUT = 900


@pytest.fixture
def team(tmp_path: Path) -> Path:
    """A team's folder of patterns holding a copy of the example pattern."""
    folder = tmp_path / "team-patterns"
    shutil.copytree(EXAMPLE, folder / PATTERN)
    return folder


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """An empty working folder, the one builder runs in."""
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def answers(project: Path) -> dict[str, object]:
    data: dict[str, object] = yaml.safe_load((project / ".builder-answers.yml").read_text())
    return data


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        path.relative_to(root).as_posix(): (path.read_bytes(), stat.S_IMODE(path.stat().st_mode))
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


# --------------------------------------------------------------------------- generating


def test_generates_from_a_pattern_path(team: Path, work: Path) -> None:
    result = run_builder("--pattern-path", str(team), "--pattern", PATTERN, "--name", "x", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "Generated the api-key service 'x'" in result.stdout
    project = work / "x"
    security = (project / "src" / "app" / "security.py").read_text()
    assert 'HEADER = "x-api-key"' in security
    main = (project / "src" / "app" / "main.py").read_text()
    # The team's main.py extends builder's base: builder's code with the team's blocks in it.
    assert "app.add_middleware(ApiKeys, digests=settings.api_key_digests)" in main
    assert "app.add_middleware(FastRoutes)" in main
    assert "api_key_digests=_api_key_digests(env)" in (project / "src/app/config.py").read_text()
    assert (project / "tests" / "test_auth.py").read_bytes() == (
        EXAMPLE / "template" / "tests" / "test_auth.py"
    ).read_bytes()
    assert "## API keys" in (project / "README.md").read_text()
    assert answers(project)["pattern"] == PATTERN


def test_the_environment_variable_is_a_pattern_path(
    team: Path, work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(PATTERN_PATH_ENV, os.pathsep.join([str(empty), "", str(team)]))
    result = run_builder("--pattern", PATTERN, "--name", "y", cwd=work)
    assert result.returncode == 0, result.stderr
    assert (work / "y" / "src" / "app" / "security.py").is_file()


def test_the_first_folder_holding_a_name_wins(
    team: Path, work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    later = tmp_path / "later"
    shutil.copytree(EXAMPLE, later / PATTERN)
    broken = later / PATTERN / "template" / "src" / "app" / "security.py.j2"
    broken.write_text("{% broken %}\n")
    # The command line's folders come before the variable's, in the order given.
    monkeypatch.setenv(PATTERN_PATH_ENV, str(team))
    result = run_builder("--pattern-path", str(later), "--pattern", PATTERN, cwd=work)
    assert result.returncode == 2
    assert str(later / PATTERN) in result.stderr
    monkeypatch.setenv(PATTERN_PATH_ENV, str(later))
    result = run_builder("--pattern-path", str(team), "--pattern", PATTERN, cwd=work)
    assert result.returncode == 0, result.stderr


def test_the_pattern_names_its_own_files_apart_from_builders(team: Path, work: Path) -> None:
    own = team / PATTERN
    # The pattern's template_files/src/app/main.py.j2 has the name of builder's base relative to
    # its folder, and extends "template_files/src/app/main.py.j2": that is builder's base, since
    # the pattern's own files are named external/api-key/... (else it would extend itself).
    assert (own / "template_files" / "src" / "app" / "main.py.j2").is_file()
    # A helper of the pattern's own is imported by that name.
    (own / "template_files" / "_team.j2").write_text(
        "{% macro owner() %}Owned by the platform team ({{ name }}).{% endmacro %}\n"
    )
    (own / "template" / "OWNERS.md.j2").write_text(
        '{% from "external/api-key/template_files/_team.j2" import owner with context %}'
        "{{ owner() }}\n"
    )
    # So is a sample file of its own, beside builder's.
    (own / "samples").mkdir()
    (own / "samples" / "team.txt").write_text("a sample of the team's\n")
    with (own / "pattern.yaml").open("a") as meta:
        meta.write("sample_files:\n  data/team.txt: external/api-key/samples/team.txt\n")
        meta.write("  data/iris.onnx: sample_models/iris/model.onnx\n")
    result = run_builder("--pattern-path", str(team), "--pattern", PATTERN, "--name", "z", cwd=work)
    assert result.returncode == 0, result.stderr
    assert (work / "z" / "OWNERS.md").read_text() == "Owned by the platform team (z).\n"
    assert (work / "z" / "data" / "team.txt").read_text() == "a sample of the team's\n"
    assert (work / "z" / "data" / "iris.onnx").read_bytes() == (
        REPO / "sample_models" / "iris" / "model.onnx"
    ).read_bytes()
    assert "app.add_middleware(ApiKeys" in (work / "z" / "src" / "app" / "main.py").read_text()


# --------------------------------------------------------------------------- listing, explaining


def test_list_patterns_says_where_each_comes_from(team: Path, work: Path, tmp_path: Path) -> None:
    later = tmp_path / "later"
    shutil.copytree(EXAMPLE, later / PATTERN)
    shutil.copytree(EXAMPLE, later / "web-single")
    shutil.copytree(EXAMPLE, later / "Not_A_Name")
    result = run_builder(
        "--pattern-path", str(team), "--pattern-path", str(later), "--list-patterns", cwd=work
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("web-single ") and line.endswith("[packaged]") for line in lines)
    assert any(
        line.startswith("api-key ") and "API key" in line and line.endswith(f"[{team / PATTERN}]")
        for line in lines
    )
    hidden = f"not used: {team / PATTERN} has the same name and comes first  [{later / PATTERN}]"
    assert any(line.startswith("api-key ") and line.endswith(hidden) for line in lines)
    refused = f"refused: a packaged pattern has this name; rename the folder  [{later}/web-single]"
    assert any(line.endswith(refused) for line in lines)
    assert any(line.startswith("Not_A_Name ") and "ignored" in line for line in lines)


def test_explain_shows_an_external_patterns_files(team: Path, work: Path) -> None:
    result = run_builder("explain", PATTERN, "--pattern-path", str(team), cwd=work)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert (
        lines[0]
        == f"pattern api-key from {team / PATTERN} (its files are named external/api-key/...)"
    )
    assert (
        "extended  src/app/main.py  blocks: docstring, imports_after_routers, middleware" in lines
    )
    assert (
        "added     src/app/security.py  <- external/api-key/template/src/app/security.py.j2"
        in lines
    )
    assert lines[-1].endswith("0 replaced, 2 added, 0 omitted")
    # The group's --pattern-path reaches the command too.
    grouped = run_builder("--pattern-path", str(team), "explain", PATTERN, cwd=work)
    assert grouped.returncode == 0, grouped.stderr
    assert grouped.stdout == result.stdout


# --------------------------------------------------------------------------- broken patterns


def test_a_common_file_replaced_without_saying_so_is_refused(team: Path, work: Path) -> None:
    routers = team / PATTERN / "template" / "src" / "app" / "routers"
    routers.mkdir(parents=True)
    (routers / "health.py").write_text('"""A copy of the common module, edited."""\n')
    result = run_builder("--pattern-path", str(team), "--pattern", PATTERN, cwd=work)
    assert result.returncode == 2
    assert str(team / PATTERN / "pattern.yaml") in result.stderr
    assert (
        "external/api-key/template/src/app/routers/health.py replaces the common" in result.stderr
    )
    assert "list the path under replaces:" in result.stderr
    assert list(work.iterdir()) == []
    checked = run_builder("test-pattern", str(team / PATTERN), cwd=work)
    assert checked.returncode == 1
    lines = checked.stdout.splitlines()
    assert lines[-1] == "1 of 5 checks failed, 4 not run."
    lines = lines[:-1]
    assert lines[0].startswith("FAIL render ")
    assert "external/api-key/template/src/app/routers/health.py" in lines[0]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["SKIP", "parse"],
        ["SKIP", "kubernetes"],
        ["SKIP", "hadolint"],
        ["SKIP", "tests"],
    ]


def test_a_template_error_names_the_file(team: Path, work: Path) -> None:
    security = team / PATTERN / "template" / "src" / "app" / "security.py.j2"
    security.write_text("{{ no_such_variable }}\n")
    result = run_builder("--pattern-path", str(team), "--pattern", PATTERN, cwd=work)
    assert result.returncode == 2
    assert "external/api-key/template/src/app/security.py.j2: undefined variable" in result.stderr
    assert str(team / PATTERN) in result.stderr


def test_generated_python_that_does_not_compile_fails_the_parse_step(
    team: Path, work: Path
) -> None:
    security = team / PATTERN / "template" / "src" / "app" / "security.py.j2"
    security.write_text(security.read_text() + "def broken(:\n")
    result = run_builder("test-pattern", str(team / PATTERN), cwd=work)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("PASS render ")
    assert lines[1].startswith("FAIL parse ")
    assert "src/app/security.py (from external/api-key/template/src/app/security.py.j2)" in lines[1]


@pytest.mark.slow
def test_a_manifest_that_breaks_the_schema_fails_its_step(team: Path, work: Path) -> None:
    extra = team / PATTERN / "template" / "manifests" / "extra.yaml"
    extra.parent.mkdir()
    extra.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\nbogus: 1\n")
    result = run_builder("test-pattern", str(team / PATTERN), cwd=work, timeout=SLOW_TIMEOUT)
    lines = result.stdout.splitlines()
    assert result.returncode == 1
    failed = [line for line in lines if line.startswith("FAIL ")]
    assert failed[0].startswith("FAIL kubernetes extra.yaml#0 (ConfigMap v1)")
    assert "'bogus' was unexpected" in failed[0]


@pytest.mark.slow
def test_test_pattern_passes_the_example(team: Path, work: Path) -> None:
    kept = work / "kept"
    result = run_builder(
        "test-pattern", str(team / PATTERN), "--keep", str(kept), cwd=work, timeout=SLOW_TIMEOUT
    )
    assert result.returncode == 0, result.stdout + result.stderr
    *lines, summary = result.stdout.splitlines()
    assert summary == "All 5 checks passed."
    steps = [line.split()[:2] for line in lines]
    assert steps == [
        ["PASS", "render"],
        ["PASS", "parse"],
        ["PASS", "kubernetes"],
        ["PASS", "hadolint"],
        ["PASS", "tests"],
    ]
    project = kept / "iris-classifier"
    assert (project / "src" / "app" / "security.py").is_file()
    assert (project / ".venv" / "bin" / "python").exists()


@pytest.mark.slow
def test_test_pattern_fails_when_the_projects_tests_fail(team: Path, work: Path) -> None:
    tests = team / PATTERN / "template" / "tests" / "test_auth.py"
    text = tests.read_text()
    tests.write_text(
        text.replace(
            "assert answer.status_code == 401, path", "assert answer.status_code == 403, path"
        )
    )
    result = run_builder("test-pattern", str(team / PATTERN), cwd=work, timeout=SLOW_TIMEOUT)
    assert result.returncode == 1, result.stdout + result.stderr
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL ")]
    assert len(failed) == 1
    assert failed[0].startswith("FAIL tests ")
    assert "tests/test_auth.py::test_a_request_without_a_key_is_refused" in failed[0]
    assert "2 failed" in failed[0]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["--pattern-path", "missing", "--pattern", PATTERN],
            "--pattern-path missing: no such folder",
        ),
        (["--pattern-path", "{team}/api-key/pattern.yaml"], "/pattern.yaml: not a folder"),
        (
            ["--pattern-path", "{team}/api-key", "--pattern", PATTERN],
            "api-key: is a pattern itself (it holds pattern.yaml); give the folder that holds it",
        ),
        (
            ["--pattern-path", "{team}", "--pattern", "nope"],
            "unknown pattern 'nope' (known: api-key, batch, data-cache",
        ),
        (
            ["--pattern-path", "{team}", "--pattern", "nope"],
            "looked in the packaged patterns and in {team}",
        ),
        (["--pattern", PATTERN], "looked in the packaged patterns only; --pattern-path DIR"),
        (
            ["--pattern-path", "missing", "--list-patterns"],
            "--pattern-path missing: no such folder",
        ),
        (
            ["explain", PATTERN, "--pattern-path", "missing"],
            "--pattern-path missing: no such folder",
        ),
        (["test-pattern", "missing"], "test-pattern missing: no such folder"),
        (["test-pattern", "{team}"], "team-patterns: not a pattern (no pattern.yaml in it)"),
        (["test-pattern", "{team}/api-key", "--keep", "{team}"], "must be a new or empty folder"),
    ],
)
def test_bad_input_exits_2_naming_it(
    team: Path, work: Path, args: list[str], fragment: str
) -> None:
    result = run_builder(*(arg.format(team=team) for arg in args), cwd=work)
    assert result.returncode == 2, result.stdout + result.stderr
    assert fragment.format(team=team) in result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_a_missing_tool_names_itself_and_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(ToolMissingError) as missing:
        find_tool("no-such-checker")
    assert str(missing.value) == (
        "no-such-checker not found: install it with pip install 'builder[pattern-test]'"
    )


def test_a_missing_folder_in_the_variable_is_named(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PATTERN_PATH_ENV, "gone")
    result = run_builder("--list-patterns", cwd=work)
    assert result.returncode == 2
    assert f"{PATTERN_PATH_ENV}: gone: no such folder" in result.stderr


def test_a_packaged_name_is_refused_in_the_pattern_path(team: Path, work: Path) -> None:
    shutil.copytree(team / PATTERN, team / "web-single")
    result = run_builder("--pattern-path", str(team), "--pattern", "web-single", cwd=work)
    assert result.returncode == 2
    assert f"{team / 'web-single'}: refused: a packaged pattern has this name" in result.stderr
    checked = run_builder("test-pattern", str(team / "web-single"), cwd=work)
    assert checked.returncode == 2
    assert "a packaged pattern is named 'web-single'" in checked.stderr
    # Other patterns of the folder are still found.
    result = run_builder("--pattern-path", str(team), "--pattern", PATTERN, "--dry-run", cwd=work)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- projects


def test_check_and_upgrade_need_the_pattern_path(team: Path, work: Path) -> None:
    generated = run_builder(
        "--pattern-path", str(team), "--pattern", PATTERN, "--name", "p", cwd=work
    )
    assert generated.returncode == 0, generated.stderr
    project = work / "p"
    for command in ("check", "upgrade"):
        result = run_builder(command, str(project), cwd=work)
        assert result.returncode == 2
        assert "pattern: 'api-key' is not a packaged pattern" in result.stderr
        assert (
            "give its folder's parent with --pattern-path DIR (or BUILDER_PATTERN_PATH)"
            in result.stderr
        )
    checked = run_builder("check", str(project), "--pattern-path", str(team), cwd=work)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "current" in checked.stdout
    before = snapshot(project)
    upgraded = run_builder("--pattern-path", str(team), "upgrade", str(project), cwd=work)
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert snapshot(project) == before


def test_export_cookiecutter_renders_what_builder_renders(team: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    exported = run_builder(
        "export-cookiecutter", "--pattern", PATTERN, "--pattern-path", str(team), "cc", cwd=work
    )
    assert exported.returncode == 0, exported.stderr
    # The export stands alone: the team's folder is gone when cookiecutter runs.
    shutil.rmtree(team)
    assert (work / "cc" / "templates" / "external" / PATTERN / "template_files" / "src").is_dir()
    config = {"replay_dir": str(tmp_path / ".replay"), "cookiecutters_dir": str(tmp_path / ".cc")}
    theirs = Path(
        cookiecutter(
            str(work / "cc"),
            no_input=True,
            output_dir=str(tmp_path / "cc-out"),
            default_config=config,
        )
    )
    shutil.copytree(EXAMPLE, team / PATTERN)
    ours = run_builder("--pattern-path", str(team), "--pattern", PATTERN, cwd=work)
    assert ours.returncode == 0, ours.stderr
    assert snapshot(theirs) == snapshot(work / theirs.name)
