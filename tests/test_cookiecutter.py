"""A pattern exported for cookiecutter renders, with real cookiecutter, what builder renders."""

from __future__ import annotations

import ast
import json
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, run_builder
from cookiecutter.main import cookiecutter

from builder_core import build, export_cookiecutter, pattern_names
from builder_core.cookiecutter_export import EXTENSION_MODULE

# What cookiecutter (and so the exported extension) can be relied on to provide.
PORTABLE_IMPORTS = {"__future__", "json", "re", "collections.abc", "typing", "jinja2", "jinja2.ext"}
PORTABLE_IMPORTS |= {"yaml"}


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        path.relative_to(root).as_posix(): (path.read_bytes(), stat.S_IMODE(path.stat().st_mode))
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def run_cookiecutter(template: Path, output: Path, extra: dict[str, Any] | None = None) -> Path:
    """Real cookiecutter, without prompts, keeping its replay files out of the home folder."""
    config = {"replay_dir": str(output / ".replay"), "cookiecutters_dir": str(output / ".cc")}
    project = cookiecutter(
        str(template),
        no_input=True,
        extra_context=extra,
        output_dir=str(output / "out"),
        default_config=config,
    )
    return Path(project)


def assert_identical(got: Path, want: Path) -> None:
    generated, expected = snapshot(got), snapshot(want)
    assert sorted(generated) == sorted(expected)
    different = [name for name in expected if generated[name] != expected[name]]
    assert not different, f"cookiecutter and builder differ in {different}"


@pytest.mark.parametrize("pattern", pattern_names())
def test_cookiecutter_renders_what_builder_renders(pattern: str, tmp_path: Path) -> None:
    export = tmp_path / "export"
    export_cookiecutter(pattern=pattern, destination=export)
    ours = build(pattern=pattern, output_dir=tmp_path / "builder").target
    theirs = run_cookiecutter(export, tmp_path)
    assert theirs.name == ours.name
    assert_identical(theirs, ours)


def test_prompted_values_reach_every_file(tmp_path: Path) -> None:
    # Defaults come from the variable file exported with (cookiecutter renders a default as a
    # template, so text that looks like Jinja must come out as it is) ...
    defaults = {"description": "Scores {{ transactions }} for {% fraud %}.", "cpu_limit": "2"}
    # ... and answers are text, as a user types them.
    answers = {
        "name": "fraud-scorer",
        "port": "9100",
        "offload_inference": "yes",
        "image_repository": "registry.example.com/team/fraud",
    }
    base = yaml.safe_load((REPO / "vars.yaml").read_text())
    (tmp_path / "defaults.yaml").write_text(yaml.safe_dump(base | defaults))
    export = tmp_path / "export"
    export_cookiecutter(
        pattern="web-single", destination=export, variable_file=tmp_path / "defaults.yaml"
    )
    theirs = run_cookiecutter(export, tmp_path, answers)

    typed = {**answers, "port": 9100, "offload_inference": True}
    (tmp_path / "vars.yaml").write_text(yaml.safe_dump(base | defaults | typed))
    ours = build(variable_file=tmp_path / "vars.yaml", output_dir=tmp_path / "builder").target
    assert theirs.name == "fraud-scorer"
    assert_identical(theirs, ours)


def test_structured_values_are_not_prompted_for(tmp_path: Path) -> None:
    export_cookiecutter(pattern="web-single", destination=tmp_path / "export")
    settings = json.loads((tmp_path / "export" / "cookiecutter.json").read_text())
    prompts = [key for key in settings if not key.startswith("_")]
    assert prompts[0] == "name"
    assert all(not isinstance(settings[key], list | dict) for key in prompts)
    assert "data_sample" not in prompts
    assert "model" in settings["_builder"]["context"]
    assert settings["_extensions"] == [f"{EXTENSION_MODULE}.BuilderExtension"]


def test_the_extension_needs_nothing_but_what_cookiecutter_brings(tmp_path: Path) -> None:
    export_cookiecutter(pattern="web-single", destination=tmp_path / "export")
    tree = ast.parse((tmp_path / "export" / f"{EXTENSION_MODULE}.py").read_text())
    imported = {
        name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
        )
    }
    assert imported <= PORTABLE_IMPORTS


def test_the_command_exports_and_refuses_an_existing_folder(tmp_path: Path) -> None:
    result = run_builder("export-cookiecutter", "--pattern", "web-single", "cc", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "cookiecutter cc" in result.stdout
    assert (tmp_path / "cc" / "cookiecutter.json").is_file()
    again = run_builder("export-cookiecutter", "cc", cwd=tmp_path)
    assert again.returncode == 2
    assert "--force" in again.stderr
    unknown = run_builder("export-cookiecutter", "--pattern", "nope", "other", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "unknown pattern 'nope'" in unknown.stderr
    assert not (tmp_path / "other").exists()
