"""The canary overlay and the Gateway API components, rendered by the real ``kubectl kustomize``.

Every online pattern's overlay, alone and with each component, renders; what it renders passes
the strict Kubernetes schema check (core kinds) and, for the HTTPRoutes, the Gateway API's own
published schema (tests/fixtures). The selectors do what the README promises.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from builder_core import pattern_names
from builder_core.static_checks import schema_problems

ONLINE = [pattern for pattern in pattern_names() if pattern != "batch"]
COMPONENTS = ["gateway-weights", "gateway-mirror"]
HTTPROUTE_SCHEMA = Path(__file__).parent / "fixtures" / "gateway-api-httproute-v1.schema.json"

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl")

Doc = dict[str, Any]


def kustomize(folder: Path) -> list[Doc]:
    """What ``kubectl kustomize`` renders from ``folder`` (it needs no cluster)."""
    result = subprocess.run(
        ["kubectl", "kustomize", str(folder)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def with_component(project: Path, component: str, tmp_path: Path) -> list[Doc]:
    """The overlay with ``component`` turned on, as its kustomization's comment says to."""
    copy = tmp_path / "project"
    shutil.copytree(project / "manifests", copy / "manifests")
    kustomization = copy / "manifests" / "overlays" / "canary" / "kustomization.yaml"
    text = kustomization.read_text()
    text = text.replace("# components:", "components:")
    text = text.replace(f"#   - ../../components/{component}", f"  - ../../components/{component}")
    kustomization.write_text(text)
    return kustomize(kustomization.parent)


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    """The documents of one kind."""
    return [doc for doc in docs if doc["kind"] == kind]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether a matchLabels-style selector matches these labels."""
    return all(labels.get(key) == value for key, value in selector.items())


def pod_labels(deployment: Doc) -> dict[str, str]:
    """The labels of a Deployment's pods."""
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def core_problems(docs: list[Doc]) -> list[str]:
    """Strict schema problems of the documents of core (non-Gateway API) kinds."""
    return [
        problem
        for doc in docs
        if not doc["apiVersion"].startswith("gateway.networking.k8s.io/")
        for problem in schema_problems(doc["metadata"]["name"], doc)
    ]


@pytest.mark.parametrize("pattern", ONLINE)
def test_overlay_renders_valid_canary_beside_stable(
    pattern: str, generated_project: Callable[[str], Path]
) -> None:
    manifests = generated_project(pattern) / "manifests"
    base, overlay = kustomize(manifests), kustomize(manifests / "overlays" / "canary")
    assert core_problems(overlay) == []
    canaries = of_kind(overlay, "Deployment")
    assert canaries, "the overlay renders no Deployment"
    for canary in canaries:
        stable = next(
            d
            for d in of_kind(base, "Deployment")
            if d["metadata"]["name"] + "-canary" == canary["metadata"]["name"]
        )
        assert pod_labels(stable)["track"] == "stable"
        assert pod_labels(canary)["track"] == "canary"
        assert canary["spec"]["replicas"] == 1
        # The canary's own selector takes its pods and never the stable ones.
        selector = canary["spec"]["selector"]["matchLabels"]
        assert selects(selector, pod_labels(canary))
        assert not selects(selector, pod_labels(stable))
        # The stable selector stays as it was (no track), and the Service sends to both tracks.
        assert "track" not in stable["spec"]["selector"]["matchLabels"]
        service = next(
            s
            for s in of_kind(base, "Service")
            if selects(s["spec"]["selector"], pod_labels(stable))
        )
        assert selects(service["spec"]["selector"], pod_labels(canary))
        # The NetworkPolicy that admits the stable pods' clients admits the canary's too.
        policies = [
            p
            for p in of_kind(base, "NetworkPolicy")
            if selects(p["spec"]["podSelector"]["matchLabels"], pod_labels(stable))
        ]
        assert policies
        assert all(
            selects(p["spec"]["podSelector"]["matchLabels"], pod_labels(canary)) for p in policies
        )


@pytest.mark.parametrize("pattern", ONLINE)
def test_stable_autoscaler_targets_only_the_stable_deployment(
    pattern: str, generated_project: Callable[[str], Path]
) -> None:
    """The canary has no HPA; the stable one scales its own Deployment by name.

    The stable PodDisruptionBudget selects the canary's pods too, on purpose (README: a drain
    takes at most one serving pod of either track).
    """
    manifests = generated_project(pattern) / "manifests"
    base, overlay = kustomize(manifests), kustomize(manifests / "overlays" / "canary")
    assert of_kind(overlay, "HorizontalPodAutoscaler") == []
    canary_names = {d["metadata"]["name"] for d in of_kind(overlay, "Deployment")}
    targets = {
        h["spec"]["scaleTargetRef"]["name"] for h in of_kind(base, "HorizontalPodAutoscaler")
    }
    assert targets.isdisjoint(canary_names)


def test_make_canary_writes_the_candidate(
    generated_project: Callable[[str], Path], tmp_path: Path
) -> None:
    """The candidate.yaml `make canary` writes renders the candidate's image, version, replicas."""
    project = tmp_path / "web"
    shutil.copytree(generated_project("web-single"), project)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "kubectl").write_text("#!/bin/sh\nexit 0\n")
    (fake / "kubectl").chmod(0o755)
    env = {"PATH": f"{fake}:/usr/bin:/bin"}
    args = ["make", "-s", "canary", "IMAGE=registry.example:5000/web:v2", "REPLICAS=3"]
    subprocess.run(args, cwd=project, env=env, check=True, capture_output=True)
    (canary,) = kustomize(project / "manifests" / "overlays" / "canary")
    assert canary["spec"]["replicas"] == 3
    assert canary["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example:5000/web:v2"
    )
    assert pod_labels(canary)["app.kubernetes.io/version"] == "v2"


def test_model_load_canary_of_a_model_alone(
    generated_project: Callable[[str], Path], tmp_path: Path
) -> None:
    """model-load: `make canary MODEL_URI=... MODEL_SHA256=...` keeps the image, and both the
    canary's loader and its server get the candidate's model and sha256."""
    project = tmp_path / "model-load"
    shutil.copytree(generated_project("model-load"), project)
    stable = kustomize(project / "manifests" / "overlays" / "canary")[0]
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "kubectl").write_text("#!/bin/sh\nexit 0\n")
    (fake / "kubectl").chmod(0o755)
    uri, digest = "https://models.example/fraud/v2.onnx", "ab" * 32
    args = ["make", "-s", "canary", f"MODEL_URI={uri}", f"MODEL_SHA256={digest}", "VERSION=m2"]
    subprocess.run(args, cwd=project, env={"PATH": f"{fake}:/usr/bin:/bin"}, check=True)
    (canary,) = kustomize(project / "manifests" / "overlays" / "canary")
    spec = canary["spec"]["template"]["spec"]
    assert (
        spec["containers"][0]["image"]
        == stable["spec"]["template"]["spec"]["containers"][0]["image"]
    )
    for container in (spec["initContainers"][0], spec["containers"][0]):
        env = {item["name"]: item.get("value") for item in container["env"]}
        assert (env["MODEL_URI"], env["MODEL_SHA256"]) == (uri, digest), container["name"]
    assert pod_labels(canary)["app.kubernetes.io/version"] == "m2"
    assert not core_problems([canary])


@pytest.mark.parametrize("component", COMPONENTS)
@pytest.mark.parametrize("pattern", [p for p in ONLINE if p != "horizontal-microservice"])
def test_gateway_components_render_valid_routes(
    pattern: str, component: str, generated_project: Callable[[str], Path], tmp_path: Path
) -> None:
    docs = with_component(generated_project(pattern), component, tmp_path)
    assert core_problems(docs) == []
    schema = json.loads(HTTPROUTE_SCHEMA.read_text())
    (route,) = of_kind(docs, "HTTPRoute")
    jsonschema.validate(route, schema)
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    (rule,) = route["spec"]["rules"]
    refs = [ref["name"] for ref in rule["backendRefs"]]
    mirrors = [f["requestMirror"]["backendRef"]["name"] for f in rule.get("filters", [])]
    for ref in refs + mirrors:
        assert ref in services, f"{ref}: no such Service"
    (canary,) = of_kind(docs, "Deployment")
    canary_service = services[refs[-1] if component == "gateway-weights" else mirrors[0]]
    assert selects(canary_service["spec"]["selector"], pod_labels(canary))
    if component == "gateway-weights":
        assert [ref["weight"] for ref in rule["backendRefs"]] == [90, 10]


def test_vendored_schema_refuses_a_bad_route() -> None:
    """The fixture is a real schema: a weight below zero is refused."""
    schema = json.loads(HTTPROUTE_SCHEMA.read_text())
    route = {"spec": {"rules": [{"backendRefs": [{"name": "x", "port": 80, "weight": -1}]}]}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(route, schema)


def test_batch_has_no_canary(generated_project: Callable[[str], Path]) -> None:
    manifests = generated_project("batch") / "manifests"
    assert not (manifests / "overlays").exists()
    assert not (manifests / "components" / "gateway-weights").exists()
