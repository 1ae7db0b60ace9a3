"""Static checks of every generated pattern with the real tools: no Docker, no cluster needed.

* Kubernetes manifests: ``kubernetes-validate`` (strict schemas) plus the builder's contract.
* Dockerfiles: ``hadolint`` with no warnings, plus the image contract.
* All YAML: ``yamllint`` with ``tests/yamllint.yaml``.
* docker-compose.yml: the compose-spec JSON schema vendored by ``check-jsonschema``.

The schema and hadolint checks are :mod:`builder_core.static_checks`, the ones ``builder
test-pattern`` runs on a team's pattern. Each pattern is built once per module; a new pattern is
picked up without editing this file.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

import builder_core
from builder_core import static_checks
from builder_core.errors import ToolMissingError
from builder_core.static_checks import (
    KUBERNETES_VERSION,
    describe_run,
    find_tool,
    hadolint_findings,
    manifest_documents,
    manifest_files,
    run,
    schema_problems,
)

PATTERNS = builder_core.pattern_names()
YAMLLINT_CONFIG = Path(__file__).with_name("yamllint.yaml")
BASE_IMAGE = re.compile(r"python:3\.11-slim(@sha256:[0-9a-f]{64})?")
COMPOSE_SCHEMA = ("builtin_schemas", "vendor", "compose-spec.json")

by_pattern = pytest.mark.parametrize("pattern", PATTERNS, ids=PATTERNS)


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every pattern, generated with its default variables: pattern name → service folder."""
    built: dict[str, Path] = {}
    for pattern in PATTERNS:
        result = builder_core.build(
            name=f"{pattern}-svc",
            pattern=pattern,
            output_dir=tmp_path_factory.mktemp(f"static-{pattern}"),
        )
        built[pattern] = result.target
    return built


def _yaml_files(project: Path) -> list[Path]:
    return sorted(
        path for path in project.rglob("*") if path.is_file() and path.suffix in {".yaml", ".yml"}
    )


# --------------------------------------------------------------------------- Kubernetes


def _effective(container: dict[str, Any], pod: dict[str, Any], key: str) -> Any:
    """A security setting as Kubernetes applies it: the container's value overrides the pod's."""
    if key in container.get("securityContext", {}):
        return container["securityContext"][key]
    return pod.get("securityContext", {}).get(key)


def _container_problems(
    where: str, container: dict[str, Any], pod: dict[str, Any], *, probed: bool = True
) -> list[str]:
    problems: list[str] = []
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if probed and probe not in container:
            problems.append(f"{where}: no {probe}")
        if not probed and probe in container:
            problems.append(f"{where}: {probe} on an init container (the API server refuses it)")
    resources = container.get("resources", {})
    for section in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in resources.get(section, {}):
                problems.append(f"{where}: no resources.{section}.{resource}")
    context = container.get("securityContext", {})
    if _effective(container, pod, "runAsNonRoot") is not True:
        problems.append(f"{where}: runAsNonRoot is not true")
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation is not false")
    if "ALL" not in context.get("capabilities", {}).get("drop", []):
        problems.append(f"{where}: capabilities.drop does not contain ALL")
    if context.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}: readOnlyRootFilesystem is not true")
    seccomp = _effective(container, pod, "seccompProfile") or {}
    if seccomp.get("type") != "RuntimeDefault":
        problems.append(f"{where}: seccompProfile is not RuntimeDefault")
    empty_dirs = {volume["name"] for volume in pod.get("volumes", []) if "emptyDir" in volume}
    mounts = container.get("volumeMounts", [])
    if not any(m["mountPath"] == "/tmp" and m["name"] in empty_dirs for m in mounts):  # noqa: S108
        problems.append(f"{where}: no emptyDir volume mounted at /tmp")
    return problems


def _serves_http(deployment: dict[str, Any]) -> bool:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return any(port.get("name") == "http" for c in containers for port in c.get("ports", []))


def _targets(hpa: dict[str, Any], deployment: dict[str, Any]) -> bool:
    ref = hpa.get("spec", {}).get("scaleTargetRef", {})
    wanted = {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}
    return all(ref.get(key) == value for key, value in wanted.items())


def _selects(pdb: dict[str, Any], deployment: dict[str, Any]) -> bool:
    selector = pdb.get("spec", {}).get("selector", {}).get("matchLabels", {})
    labels = deployment["spec"]["template"].get("metadata", {}).get("labels", {})
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def contract_problems(docs: list[Any]) -> list[str]:
    """What breaks the builder's Kubernetes contract in a set of (schema-valid) documents."""
    problems: list[str] = []
    deployments = [doc for doc in docs if doc.get("kind") == "Deployment"]
    hpas = [
        doc
        for doc in docs
        if (doc.get("apiVersion"), doc.get("kind")) == ("autoscaling/v2", "HorizontalPodAutoscaler")
    ]
    pdbs = [
        doc
        for doc in docs
        if (doc.get("apiVersion"), doc.get("kind")) == ("policy/v1", "PodDisruptionBudget")
    ]
    if not any(_serves_http(deployment) for deployment in deployments):
        problems.append("no Deployment serving HTTP (a container port named 'http')")
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        if "replicas" in deployment["spec"]:
            problems.append(f"Deployment {name}: sets spec.replicas (the autoscaler owns it)")
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            where = f"Deployment {name} container {container['name']}"
            problems += _container_problems(where, container, pod)
        for container in pod.get("initContainers", []):
            where = f"Deployment {name} init container {container['name']}"
            # Probes are allowed (and needed) only on a sidecar: restartPolicy Always.
            sidecar = container.get("restartPolicy") == "Always"
            problems += _container_problems(where, container, pod, probed=sidecar)
        if _serves_http(deployment):
            if not any(_targets(hpa, deployment) for hpa in hpas):
                problems.append(f"Deployment {name}: no autoscaling/v2 HPA targets it")
            if not any(_selects(pdb, deployment) for pdb in pdbs):
                problems.append(f"Deployment {name}: no policy/v1 PDB selects its pods")
    return problems


@by_pattern
def test_manifests_match_kubernetes_schemas(projects: dict[str, Path], pattern: str) -> None:
    docs = manifest_documents(projects[pattern])
    assert docs, "no Kubernetes documents under manifests/"
    problems = [problem for label, doc in docs for problem in schema_problems(label, doc)]
    assert not problems, f"kubernetes-validate {KUBERNETES_VERSION} (strict):\n" + "\n".join(
        problems
    )


@by_pattern
def test_kustomization_lists_every_manifest(projects: dict[str, Path], pattern: str) -> None:
    folder = projects[pattern] / "manifests"
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = kustomization.get("resources", [])
    assert len(listed) == len(set(listed)), f"duplicate resources: {listed}"
    missing = sorted(name for name in listed if not (folder / name).is_file())
    unlisted = sorted(
        path.name for path in manifest_files(projects[pattern]) if path.name not in listed
    )
    assert not missing, f"kustomization.yaml lists files that do not exist: {missing}"
    assert not unlisted, f"manifests missing from kustomization.yaml resources: {unlisted}"


@by_pattern
def test_manifests_keep_the_contract(projects: dict[str, Path], pattern: str) -> None:
    problems = contract_problems([doc for _, doc in manifest_documents(projects[pattern])])
    assert not problems, "\n".join(problems)


def test_contract_check_catches_a_broken_deployment() -> None:
    container = {"name": "api", "ports": [{"name": "http", "containerPort": 8000}]}
    deployment = {
        "kind": "Deployment",
        "metadata": {"name": "svc"},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [container]}}},
    }
    init = {"name": "loader", "livenessProbe": {"exec": {"command": ["true"]}}}
    deployment["spec"]["template"]["spec"]["initContainers"] = [init]  # type: ignore[index]
    problems = "\n".join(contract_problems([deployment]))
    for expected in (
        "init container loader: livenessProbe on an init container",
        "init container loader: no resources.requests.cpu",
        "sets spec.replicas",
        "no startupProbe",
        "no resources.limits.memory",
        "runAsNonRoot",
        "allowPrivilegeEscalation",
        "drop does not contain ALL",
        "readOnlyRootFilesystem",
        "seccompProfile",
        "emptyDir",
        "HPA",
        "PDB",
    ):
        assert expected in problems


def test_schema_check_reports_unknown_kinds_and_fields() -> None:
    unknown_kind = schema_problems("x", {"apiVersion": "example.com/v1", "kind": "Nope"})
    assert unknown_kind
    assert "Couldn't find schema" in unknown_kind[0]
    unknown_field = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}, "x": 1}
    assert "'x' was unexpected" in "".join(schema_problems("y", unknown_field))


# --------------------------------------------------------------------------- Dockerfiles


def _dockerfiles(project: Path) -> list[Path]:
    found = static_checks.dockerfiles(project)
    assert found, f"no Dockerfile in {project}"
    return found


def _hadolint() -> str:
    try:
        return find_tool("hadolint")
    except ToolMissingError as err:
        pytest.fail(f"{err} (or the test extra)")


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuation lines joined."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.partition(" ")
        found.append((keyword.upper(), arguments.strip()))
        pending = ""
    return found


def dockerfile_problems(text: str) -> list[str]:
    """What breaks the builder's image contract in one Dockerfile's text."""
    problems: list[str] = []
    instructions = _instructions(text)
    stages: list[str] = []
    final_stage: list[tuple[str, str]] = []
    for keyword, arguments in instructions:
        if keyword != "FROM":
            final_stage.append((keyword, arguments))
            continue
        final_stage = []
        words = [word for word in arguments.split() if not word.startswith("--")]
        image = words[0] if words else ""
        if image.lower() not in stages and not BASE_IMAGE.fullmatch(image):
            problems.append(f"FROM {arguments}: the base image must be python:3.11-slim")
        if len(words) == 3 and words[1].lower() == "as":
            stages.append(words[2].lower())
    if not any(keyword == "FROM" for keyword, _ in instructions):
        problems.append("no FROM instruction")
    users = [arguments for keyword, arguments in final_stage if keyword == "USER"]
    user, _, group = users[-1].partition(":") if users else ("", "", "")
    if not user.isdigit() or int(user) == 0 or (group and not group.isdigit()):
        problems.append(f"final stage USER {users[-1:]}: must be a numeric non-root uid[:gid]")
    if not any(keyword == "EXPOSE" for keyword, _ in final_stage):
        problems.append("final stage has no EXPOSE")
    checks = [arguments for keyword, arguments in final_stage if keyword == "HEALTHCHECK"]
    if not checks or checks[-1].upper() == "NONE":
        problems.append("final stage has no HEALTHCHECK")
    return problems


@by_pattern
def test_dockerfiles_pass_hadolint(projects: dict[str, Path], pattern: str) -> None:
    hadolint = _hadolint()
    for dockerfile in _dockerfiles(projects[pattern]):
        findings = hadolint_findings(dockerfile, hadolint)
        if findings is not None:
            pytest.fail(describe_run(findings))


@by_pattern
def test_dockerfiles_keep_the_contract(projects: dict[str, Path], pattern: str) -> None:
    for dockerfile in _dockerfiles(projects[pattern]):
        problems = dockerfile_problems(dockerfile.read_text(encoding="utf-8"))
        if not (dockerfile.parent / ".dockerignore").is_file():
            problems.append("no .dockerignore beside it")
        assert not problems, f"{dockerfile.name}:\n" + "\n".join(problems)


def test_dockerfile_check_catches_a_broken_image() -> None:
    good = "FROM python:3.11-slim AS deps\nFROM deps\nUSER 10001:10001\nEXPOSE 80\nHEALTHCHECK \\\n"
    good += "  CMD true\n"
    assert dockerfile_problems(good) == []
    bad = "# syntax=docker/dockerfile:1\nFROM python\nUSER app\nRUN true\n"
    problems = "\n".join(dockerfile_problems(bad))
    for expected in ("FROM python:", "USER ['app']", "EXPOSE", "HEALTHCHECK"):
        assert expected in problems
    assert "USER []" in "\n".join(dockerfile_problems("FROM python:3.11-slim\n"))
    assert "USER ['0']" in "\n".join(dockerfile_problems("FROM python:3.11-slim\nUSER 0\n"))


# --------------------------------------------------------------------------- YAML


@by_pattern
def test_yaml_passes_yamllint(projects: dict[str, Path], pattern: str) -> None:
    project = projects[pattern]
    command = [sys.executable, "-m", "yamllint", "-s", "-c", str(YAMLLINT_CONFIG)]
    listing = run([*command, "--list-files", str(project)])
    linted = sorted(Path(line) for line in listing.stdout.splitlines() if line)
    # yamllint finds the files itself; make sure it sees every one (dot folders included).
    if listing.returncode != 0 or linted != _yaml_files(project):
        pytest.fail(f"expected {_yaml_files(project)}\n{describe_run(listing)}")
    result = run([*command, str(project)])
    if result.returncode != 0:
        pytest.fail(describe_run(result))


# --------------------------------------------------------------------------- docker compose


def _compose_schema() -> dict[str, Any]:
    resource = importlib.resources.files("check_jsonschema").joinpath(*COMPOSE_SCHEMA)
    schema: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    return schema


@by_pattern
def test_compose_file_matches_compose_spec(projects: dict[str, Path], pattern: str) -> None:
    compose = yaml.safe_load((projects[pattern] / "docker-compose.yml").read_text(encoding="utf-8"))
    schema = _compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [
        f"at {'/'.join(str(part) for part in error.absolute_path) or '<root>'}: {error.message}"
        for error in validator.iter_errors(compose)
    ]
    assert not errors, "compose-spec schema:\n" + "\n".join(errors)


@by_pattern
def test_compose_services_are_health_gated(projects: dict[str, Path], pattern: str) -> None:
    compose = yaml.safe_load((projects[pattern] / "docker-compose.yml").read_text(encoding="utf-8"))
    problems: list[str] = []
    services: dict[str, Any] = compose.get("services") or {}
    assert services, "docker-compose.yml defines no services"
    for name, service in services.items():
        healthcheck = service.get("healthcheck") or {}
        if not healthcheck.get("test") or healthcheck.get("disable"):
            problems.append(f"service {name}: no healthcheck")
        depends_on = service.get("depends_on", {})
        if isinstance(depends_on, list):
            problems += [f"service {name}: depends_on {dep} has no condition" for dep in depends_on]
            continue
        for dependency, settings in depends_on.items():
            if not (settings or {}).get("condition"):
                problems.append(f"service {name}: depends_on {dependency} has no condition")
    assert not problems, "\n".join(problems)
