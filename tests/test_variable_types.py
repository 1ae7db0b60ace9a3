"""Every variable has a real type: junk is refused at validation, and nothing a user types is
read as syntax by the files it lands in (Dockerfile, YAML, compose, shell, make, Markdown)."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import run_builder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder_core import build
from builder_core.errors import VariablesError
from builder_core.generate import RenderedProject, render_project
from builder_core.patterns import load_pattern, pattern_names
from builder_core.portable import to_markdown_text
from builder_core.variables import variables_model

# Characters that mean something to a shell, make, compose, a Dockerfile, YAML or Markdown
# wherever a value could be pasted. Only free text (``description``) may hold the printable ones.
SYNTAX = set("\n\r\t $`\"'\\#<>{}|^")
FREE_TEXT = {"description"}
# A cron schedule's fields are separated by spaces; the type allows nothing else of SYNTAX.
SEPARATED = {"schedule": {" "}}


def string_variables(pattern: str) -> list[str]:
    model = variables_model(load_pattern(pattern).info.variables)
    return sorted(key for key, field in model.model_fields.items() if field.annotation is str)


CASES = [(pattern, key) for pattern in pattern_names() for key in string_variables(pattern)]


def render(pattern: str, **overrides: Any) -> RenderedProject:
    return render_project(pattern=pattern, variables={**defaults(pattern), **overrides})


@functools.cache
def defaults(pattern: str) -> dict[str, Any]:
    return dict(render_project(pattern=pattern).answers["variables"])


@pytest.mark.parametrize(
    ("pattern", "key", "value"),
    [
        ("model-in-image", "model_version", "v1\nLABEL evil=1"),
        ("model-in-image", "model_version", "v1\n$(shell touch x)"),
        ("model-in-image", "model_version", "v1 2"),
        ("model-load", "model_uri", "https://store/model.onnx?$(touch x)"),
        ("model-load", "model_uri", "https://store/${HOME}/m.onnx"),
        ("model-load", "model_uri", "https://store/m.onnx\n"),
        ("model-load", "model_uri", "ftp://store/m.onnx"),
        ("model-load", "model_uri", "https://store/a b.onnx"),
        ("model-load", "model_sha256", "$(id)"),
        ("model-load", "model_sha256", "abc123"),
        ("model-load", "model_volume_size_limit", "1Gi\n"),
        ("sync-async", "redis_url", "redis://$HOST:6379/0"),
        ("sync-async", "redis_url", "redis://redis:6379/0 --evil"),
        ("sync-async", "redis_maxmemory", "256mb$(id)"),
        ("sync-async", "redis_maxmemory", "256mb\n"),
        ("sync-async", "slow_model_file_name", "/etc/passwd"),
        ("sync-async", "slow_model_file_name", "../../x.onnx"),
        ("sync-async", "slow_model_file_name", "slow.txt"),
        ("data-cache", "redis_image", "redis:7.2$(id)"),
        ("data-cache", "redis_image", "redis:7.2\nRUN evil"),
        ("data-cache", "sample_data_id", "../../etc/passwd"),
        ("data-cache", "sample_data_id", "/etc/passwd"),
        ("web-single", "image_tag", "0.1.0\n"),
        ("web-single", "cpu_request", "250m\n"),
        ("web-single", "memory_limit", "512Mi\n"),
        ("web-single", "image_repository", "registry/app\n"),
        ("web-single", "description", "red \x1b[31m text"),
        ("web-single", "description", "nul \x00"),
        ("web-single", "description", "x" * 501),
        ("horizontal-microservice", "backends", "setosa,,virginica"),
        ("horizontal-microservice", "backends", "setosa,setosa"),
        ("horizontal-microservice", "backends", "Setosa"),
        ("horizontal-microservice", "backends", "setosa virginica"),
        ("horizontal-microservice", "backends", ",".join(f"m{n}" for n in range(17))),
        ("horizontal-microservice", "aggregate", "mean"),
    ],
)
def test_junk_is_refused_naming_the_key(pattern: str, key: str, value: str) -> None:
    with pytest.raises(VariablesError, match=f": {key}: "):
        render(pattern, **{key: value})


@pytest.mark.parametrize(
    ("pattern", "key", "value"),
    [
        ("model-in-image", "model_version", "v1.2.0-rc_1"),
        ("model-load", "model_uri", "https://store.example/m.onnx?X-Amz-Signature=ab%2F&x=(1);y!"),
        ("model-load", "model_sha256", "a" * 64),
        ("sync-async", "redis_url", "rediss://user:p%40ss@redis.ns.svc:6380/2"),
        ("sync-async", "redis_maxmemory", "2GB"),
        ("data-cache", "redis_image", "registry.local:5000/redis:7.2@sha256:" + "b" * 64),
        ("data-cache", "sample_data_id", "batch-1/digit-0001.png"),
        ("horizontal-microservice", "backends", "cat,dog-2"),
        ("horizontal-microservice", "aggregate", "all"),
    ],
)
def test_real_values_are_accepted(pattern: str, key: str, value: str) -> None:
    project = render(pattern, **{key: value})
    assert project.answers["variables"][key] == value


def test_a_file_name_variable_cannot_replace_another_output() -> None:
    model_file = defaults("sync-async")["model_file_name"]
    with pytest.raises(VariablesError, match="would overwrite slow_model_file_name") as caught:
        render("sync-async", slow_model_file_name=model_file)
    assert f"model_file_name: {model_file!r}" in str(caught.value)


def test_a_url_with_shell_punctuation_stays_one_quoted_argument(tmp_path: Path) -> None:
    uri = "https://store.example/m.onnx?a=1&b=(2);c=!x"
    overrides = {**defaults("model-load"), "model_uri": uri}
    variables = tmp_path / "vars.yaml"
    variables.write_text(yaml.safe_dump(overrides))
    target = build(pattern="model-load", variable_file=variables, output_dir=tmp_path).target
    dry = subprocess.run(
        ["make", "-n", "load"], cwd=target, capture_output=True, text=True, check=True
    )
    assert f'MODEL_URI="{uri}"' in dry.stdout
    subprocess.run(["make", "help"], cwd=target, capture_output=True, check=True)
    assert not (target / "x").exists()


def test_a_name_with_a_newline_is_refused_as_the_option(tmp_path: Path) -> None:
    result = run_builder("--name", "svc\n", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: --name: ") or "--name: " in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert list(tmp_path.iterdir()) == []


PIECES = ["\n", "\r", "$", "$(touch x)", "${HOME}", "`id`", '"', "'", "\\", "#", " ", "<b>", "*"]
values = st.lists(st.sampled_from(PIECES) | st.text(max_size=6), max_size=6).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from(CASES), prefix=st.booleans(), junk=values)
def test_any_string_is_refused_or_inert(case: tuple[str, str], prefix: bool, junk: str) -> None:
    pattern, key = case
    # Half the time the junk follows a valid value, the way an injection would.
    value = str(defaults(pattern)[key]) + junk if prefix else junk
    try:
        project = render(pattern, **{key: value})
    except VariablesError as err:
        assert f": {key}: " in str(err) or key == "name"
        assert "\n" not in str(err)
        return
    # render_project has verified that every .py, YAML and JSON file parses.
    if key in FREE_TEXT:
        assert all(char.isprintable() or char in "\n\r\t" for char in value)
        readme = project.contents[Path("README.md")].data.decode()  # type: ignore[index]
        assert to_markdown_text(value) in readme
    else:
        syntax = SYNTAX - SEPARATED.get(key, set())
        assert not syntax.intersection(value), f"{key}={value!r} was accepted"
