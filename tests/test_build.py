"""The pipeline: plan, strict rendering, verification, and all-or-nothing output."""

from __future__ import annotations

import ast
import os
import shutil
from pathlib import Path

import pytest
import yaml

from builder_core import __version__, build
from builder_core.errors import (
    ForbiddenPathError,
    GeneratedFileError,
    InvalidInputError,
    MappingError,
    OutputExistsError,
    PackagingError,
    TemplateError,
    UnknownPatternError,
)
from builder_core.render import make_environment, render_template, to_json, to_python

REPO = Path(__file__).resolve().parent.parent
DATA = ("template", "template_files", "patterns", "sample_models")
DATA_FILES = ("correspond_file_path.yaml", "vars.yaml")


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    """A private copy of the template data that a test may break."""
    root = tmp_path / "templates"
    for folder in DATA:
        shutil.copytree(REPO / folder, root / folder)
    for name in DATA_FILES:
        shutil.copy2(REPO / name, root / name)
    return root


def leftovers(folder: Path) -> list[str]:
    """Everything in ``folder``: a failed build must leave it as it was."""
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def add_mapping(templates: Path, template: str, body: str, output: str) -> None:
    """Add a template to the common layer and map it to ``output``."""
    (templates / "template_files" / template).write_text(body)
    with (templates / "correspond_file_path.yaml").open("a") as mapping:
        mapping.write(f"{template}: {output!r}\n")


def test_generates_every_planned_file(tmp_path: Path) -> None:
    result = build(output_dir=tmp_path)
    written = sorted(
        path.relative_to(result.target).as_posix()
        for path in result.target.rglob("*")
        if path.is_file()
    )
    assert written == sorted(str(item.path) for item in result.files)
    assert (result.target / "models" / "iris_svc.onnx").read_bytes() == (
        REPO / "sample_models" / "iris" / "model.onnx"
    ).read_bytes()


def test_modes_are_kept(tmp_path: Path) -> None:
    target = build(output_dir=tmp_path).target
    assert os.access(target / "run.sh", os.X_OK)
    assert not os.access(target / "Dockerfile", os.X_OK)
    assert (target.stat().st_mode & 0o777) == 0o755


def test_answers_file_records_pattern_variables_and_version(tmp_path: Path) -> None:
    target = build(name="fraud-scorer", output_dir=tmp_path).target
    answers = yaml.safe_load((target / ".builder-answers.yml").read_text())
    assert answers["builder_version"] == __version__
    assert answers["pattern"] == "web-single"
    assert answers["variables"]["name"] == "fraud-scorer"
    assert answers["model"]["source"] == "sample:iris"


def test_the_name_is_used_everywhere(tmp_path: Path) -> None:
    target = build(name="fraud-scorer", output_dir=tmp_path).target
    for relative in ("manifests/deployment.yaml", "docker-compose.yml", "Makefile"):
        text = (target / relative).read_text()
        assert "fraud-scorer" in text
        assert "iris-classifier" not in text, relative


def test_an_existing_folder_is_refused_and_kept(tmp_path: Path) -> None:
    target = tmp_path / "iris-classifier"
    target.mkdir()
    (target / "mine.txt").write_text("user data")
    with pytest.raises(OutputExistsError, match="--force"):
        build(output_dir=tmp_path)
    assert (target / "mine.txt").read_text() == "user data"
    assert leftovers(tmp_path) == ["iris-classifier"]


def test_force_never_replaces_a_file(tmp_path: Path) -> None:
    (tmp_path / "iris-classifier").write_text("a file, not a folder")
    with pytest.raises(OutputExistsError, match="not a folder"):
        build(output_dir=tmp_path, force=True)


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    result = build(output_dir=tmp_path / "out", dry_run=True)
    assert not result.written
    assert any(str(item.path) == "run.sh" for item in result.files)
    assert not (tmp_path / "out").exists()


def test_a_missing_output_dir_is_created(tmp_path: Path) -> None:
    target = build(output_dir=tmp_path / "a" / "b").target
    assert (target / "run.sh").is_file()


def test_an_undefined_variable_names_the_template(templates: Path, tmp_path: Path) -> None:
    add_mapping(templates, "broken.txt.j2", "value: {{ no_such_variable }}\n", "broken.txt")
    out = tmp_path / "out"
    with pytest.raises(TemplateError, match=r"broken\.txt\.j2: undefined .*no_such_variable"):
        build(output_dir=out, template_root=templates)
    assert leftovers(out) == []


def test_an_undefined_variable_in_a_filter_is_an_error(templates: Path, tmp_path: Path) -> None:
    add_mapping(templates, "broken.py.j2", "X = {{ missing | py }}\n", "broken.py")
    with pytest.raises(TemplateError, match="missing"):
        build(output_dir=tmp_path, template_root=templates)


def test_a_template_syntax_error_names_the_line(templates: Path, tmp_path: Path) -> None:
    add_mapping(templates, "broken.txt.j2", "ok\n{% if %}\n", "broken.txt")
    with pytest.raises(TemplateError, match=r"broken\.txt\.j2 \(line 2\)"):
        build(output_dir=tmp_path, template_root=templates)


@pytest.mark.parametrize("output", ["../escape.txt", "/etc/escape.txt", "a/../../escape.txt", ""])
def test_output_paths_stay_inside(templates: Path, tmp_path: Path, output: str) -> None:
    add_mapping(templates, "x.txt.j2", "x\n", output)
    out = tmp_path / "out"
    with pytest.raises((ForbiddenPathError, MappingError)):
        build(output_dir=out, template_root=templates)
    assert leftovers(out) == []
    assert not (tmp_path / "escape.txt").exists()


def test_a_rendered_path_that_escapes_is_refused(templates: Path, tmp_path: Path) -> None:
    add_mapping(templates, "x.txt.j2", "x\n", "{{ '..' }}/{{ name }}.txt")
    with pytest.raises(ForbiddenPathError, match="leaves the output folder"):
        build(output_dir=tmp_path / "out", template_root=templates)


def test_generated_python_must_compile(templates: Path, tmp_path: Path) -> None:
    add_mapping(templates, "bad.py.j2", "def broken(:\n", "src/bad.py")
    out = tmp_path / "out"
    with pytest.raises(GeneratedFileError, match=r"src/bad\.py \(from .*bad\.py\.j2\): line 1"):
        build(output_dir=out, template_root=templates)
    assert leftovers(out) == []


def test_generated_yaml_must_parse(templates: Path, tmp_path: Path) -> None:
    add_mapping(templates, "bad.yaml.j2", "a: [1\n", "bad.yaml")
    with pytest.raises(GeneratedFileError, match=r"bad\.yaml .*invalid YAML"):
        build(output_dir=tmp_path, template_root=templates)


def test_a_mapping_naming_a_missing_template_is_refused(tmp_path: Path) -> None:
    mapping = tmp_path / "map.yaml"
    mapping.write_text("nope.j2: nope.txt\n")
    with pytest.raises(MappingError, match=r"map\.yaml: nope\.j2: no such template"):
        build(output_dir=tmp_path, correspond_file_path=mapping)


def test_the_books_mapping_prefix_is_accepted(tmp_path: Path) -> None:
    mapping = tmp_path / "map.yaml"
    text = (REPO / "correspond_file_path.yaml").read_text()
    mapping.write_text(text.replace("Dockerfile.j2: Dockerfile", 'Dockerfile.j2: "{}/Dockerfile"'))
    target = build(output_dir=tmp_path / "out", correspond_file_path=mapping).target
    assert (target / "Dockerfile").is_file()


def own_makefile(templates: Path, body: str) -> Path:
    """Give web-single its own Makefile template over the common one."""
    layer = templates / "patterns" / "web-single"
    (layer / "template_files").mkdir(exist_ok=True)
    (layer / "template_files" / "Makefile.j2").write_text(body)
    (layer / "correspond_file_path.yaml").write_text("Makefile.j2: Makefile\n")
    return layer / "pattern.yaml"


def test_a_declared_replacement_replaces_the_common_file(templates: Path, tmp_path: Path) -> None:
    info = own_makefile(templates, "# pattern's own Makefile\n")
    info.write_text(info.read_text() + "replaces:\n  Makefile: it builds with Bazel\n")
    target = build(output_dir=tmp_path, template_root=templates).target
    assert (target / "Makefile").read_text() == "# pattern's own Makefile\n"


def test_an_undeclared_replacement_is_refused_naming_the_file(
    templates: Path, tmp_path: Path
) -> None:
    own_makefile(templates, "# pattern's own Makefile\n")
    with pytest.raises(PackagingError, match=r"Makefile\.j2 replaces the common .*replaces:"):
        build(output_dir=tmp_path / "out", template_root=templates)
    assert leftovers(tmp_path / "out") == []


def test_a_pattern_file_that_extends_the_common_one_needs_no_declaration(
    templates: Path, tmp_path: Path
) -> None:
    own_makefile(templates, '{% extends "template_files/Makefile.j2" %}\n')
    target = build(output_dir=tmp_path, template_root=templates).target
    assert "help:" in (target / "Makefile").read_text()


def test_declaring_a_replacement_that_is_not_one_is_refused(
    templates: Path, tmp_path: Path
) -> None:
    info = templates / "patterns" / "web-single" / "pattern.yaml"
    info.write_text(info.read_text() + "replaces:\n  Dockerfile: stale reason\n")
    with pytest.raises(PackagingError, match="replaces: Dockerfile: the pattern does not replace"):
        build(output_dir=tmp_path, template_root=templates)


def omit(templates: Path, path: str) -> None:
    info = templates / "patterns" / "web-single" / "pattern.yaml"
    info.write_text(info.read_text() + f"omit: [{path}]\n")


def test_a_pattern_omits_the_common_files_it_names(templates: Path, tmp_path: Path) -> None:
    omit(templates, "Makefile")
    target = build(output_dir=tmp_path, template_root=templates).target
    assert not (target / "Makefile").exists()
    assert (target / "Dockerfile").is_file()


def test_omitting_a_file_that_is_not_there_is_refused(templates: Path, tmp_path: Path) -> None:
    omit(templates, "Makefil")
    with pytest.raises(PackagingError, match="omit: Makefil: no such output file"):
        build(output_dir=tmp_path / "out", template_root=templates)
    assert leftovers(tmp_path / "out") == []


def test_an_unknown_pattern_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UnknownPatternError, match=r"known: .*web-single"):
        build(pattern="web-double", output_dir=tmp_path)


def test_labels_without_a_model_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="--labels"):
        build(labels=tmp_path / "label.json", output_dir=tmp_path)


def test_trailing_newlines_are_kept(templates: Path, tmp_path: Path) -> None:
    add_mapping(templates, "two.txt.j2", "{{ name }}\n\n", "two.txt")
    target = build(output_dir=tmp_path, template_root=templates).target
    assert (target / "two.txt").read_text() == "iris-classifier\n\n"


HOSTILE = [
    "quote \" and '",
    "new\nline",
    "{{ name }} {% if %}",
    "key: value # x",
    "\\x00 \\n",
    "é ✓",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_filters_make_safe_literals(text: str) -> None:
    assert ast.literal_eval(to_python(text)) == text
    assert yaml.safe_load(f"key: {to_json(text)}") == {"key": text}
    assert ast.literal_eval(to_python([[1.5, text], None, True])) == [[1.5, text], None, True]


@pytest.mark.parametrize("text", HOSTILE)
def test_free_text_renders_as_data(tmp_path: Path, text: str) -> None:
    variables = tmp_path / "vars.yaml"
    data = yaml.safe_load((REPO / "vars.yaml").read_text())
    variables.write_text(yaml.safe_dump({**data, "description": text}))
    target = build(variable_file=variables, output_dir=tmp_path).target
    config = ast.parse((target / "src" / "app" / "config.py").read_text())
    values = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in config.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id == "DESCRIPTION"
    }
    assert values["DESCRIPTION"] == text


def test_templates_render_from_the_data_root_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "template_files").mkdir()
    (tmp_path / "template_files" / "Dockerfile.j2").write_text("FROM scratch\n")
    env = make_environment(REPO)
    text = render_template(
        env,
        "template_files/Dockerfile.j2",
        {"pattern": "p", "name": "n", "port": 1, "serves_grpc": False},
    )
    assert "python:3.11-slim" in text
