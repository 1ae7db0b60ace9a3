"""Security of every generated pattern: who containers run as, secrets, Redis's reach, the logs.

Static, no Docker and no cluster: every workload's pods (Jobs too) and every compose service run
as a non-root user with a read-only root filesystem and no host namespaces; no secret-looking value
in the manifests, compose file, Dockerfiles, answers file or anything sent to an image build, and
secret-like files beside the project never reach the image; every Service in front of Redis is a
ClusterIP whose pods accept connections only from the service's own pods (NetworkPolicy), and
compose publishes no Redis port. Live: the logs of a running service never hold a request's
payload, nor the Redis password; a body over the size cap is a 413 on every POST route, whether
it comes with a Content-Length or chunked. Each static checker is also shown a broken input it
must catch.

Already covered elsewhere, not repeated: the restricted securityContext of every Deployment
container and the non-root USER of every Dockerfile's final stage (``test_static_checks.py``),
checkov's policies (``test_policy.py``).
"""

from __future__ import annotations

import http.client
import json
import math
import re
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from docker.utils.build import exclude_paths
from live import call, example_body, running

from builder_core import pattern_names
from builder_core.patterns import load_pattern

PATTERNS = pattern_names()
by_pattern = pytest.mark.parametrize("pattern", PATTERNS)
NAME_LABEL = "app.kubernetes.io/name"
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def documents(project: Path) -> list[dict[str, Any]]:
    """Every Kubernetes document under manifests/ (kustomization.yaml aside)."""
    found: list[dict[str, Any]] = []
    for path in sorted((project / "manifests").glob("*.yaml")):
        if path.stem != "kustomization":
            found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The pod spec of a workload, whatever its kind; None for anything else."""
    kind = doc.get("kind")
    if kind == "Pod":
        return dict(doc["spec"])
    if kind == "CronJob":
        return dict(doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    if kind in WORKLOADS:
        return dict(doc["spec"]["template"]["spec"])
    return None


def pod_labels(doc: dict[str, Any]) -> dict[str, str]:
    """The labels a workload gives its pods."""
    template = doc["spec"].get("template") or doc["spec"]["jobTemplate"]["spec"]["template"]
    return dict(template.get("metadata", {}).get("labels", {}))


# --------------------------------------------------------------------------- who runs


def _effective(container: dict[str, Any], pod: dict[str, Any], key: str) -> Any:
    """A security setting as Kubernetes applies it: the container's value overrides the pod's."""
    if key in container.get("securityContext", {}):
        return container["securityContext"][key]
    return pod.get("securityContext", {}).get(key)


def container_problems(
    where: str, container: dict[str, Any], pod: dict[str, Any], restricted: bool
) -> list[str]:
    """Root, privilege and host access of one container; with ``restricted``, the restricted
    profile too (test_static_checks.py checks it for Deployments, so only other kinds need it)."""
    context = container.get("securityContext", {})
    problems = [
        f"{where}: {key} is 0 (root)"
        for key in ("runAsUser", "runAsGroup")
        if _effective(container, pod, key) == 0
    ]
    if context.get("privileged"):
        problems.append(f"{where}: privileged")
    if any("hostPort" in port for port in container.get("ports", [])):
        problems.append(f"{where}: hostPort")
    if not restricted:
        return problems
    if _effective(container, pod, "runAsNonRoot") is not True:
        problems.append(f"{where}: runAsNonRoot is not true")
    if context.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}: readOnlyRootFilesystem is not true")
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation is not false")
    if "ALL" not in context.get("capabilities", {}).get("drop", []):
        problems.append(f"{where}: capabilities.drop does not contain ALL")
    return problems


def pod_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Who, and with what access, the pods of every workload run as."""
    problems: list[str] = []
    for doc in docs:
        pod = pod_spec(doc)
        if pod is None:
            continue
        where = f"{doc['kind']} {doc['metadata']['name']}"
        problems += [
            f"{where}: {key}" for key in ("hostNetwork", "hostPID", "hostIPC") if pod.get(key)
        ]
        if pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: mounts a service account token it does not need")
        problems += [f"{where}: hostPath volume" for v in pod.get("volumes", []) if "hostPath" in v]
        restricted = doc["kind"] != "Deployment"
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            name = f"{where} container {container['name']}"
            problems += container_problems(name, container, pod, restricted)
    return problems


@by_pattern
def test_every_pod_runs_non_root_read_only_without_host_access(
    pattern: str, generated_project: Callable[[str], Path]
) -> None:
    docs = documents(generated_project(pattern))
    assert any(pod_spec(doc) for doc in docs)
    assert pod_problems(docs) == []


def test_pod_check_catches_a_root_job() -> None:
    container: dict[str, Any] = {"name": "warm", "ports": [{"containerPort": 80, "hostPort": 80}]}
    container["securityContext"] = {"runAsUser": 0, "privileged": True}
    pod = {"containers": [container], "hostNetwork": True, "volumes": [{"hostPath": {}}]}
    job = {"kind": "Job", "metadata": {"name": "j"}, "spec": {"template": {"spec": pod}}}
    problems = "\n".join(pod_problems([job]))
    for expected in (
        "runAsUser is 0",
        "privileged",
        "hostPort",
        "hostNetwork",
        "hostPath",
        "service account token",
        "runAsNonRoot",
        "readOnlyRootFilesystem",
        "allowPrivilegeEscalation",
        "capabilities",
    ):
        assert expected in problems


# --------------------------------------------------------------------------- docker compose


def stage_users(dockerfile: str) -> dict[str, str]:
    """The user each build stage of a Dockerfile ends with ("" for the image default: root);
    the last stage is also under the key "" (what a build without a target makes)."""
    users: dict[str, str] = {}
    stage = user = ""
    for line in re.sub(r"\\\n", " ", dockerfile).splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        keyword = words[0].upper()
        if keyword == "FROM":
            names = [word for word in words[1:] if not word.startswith("--")]
            # A stage built FROM an earlier stage starts as that stage's user.
            user = users.get(names[0], "")
            stage = names[2] if len(names) == 3 and names[1].lower() == "as" else ""
        elif keyword == "USER":
            user = words[1]
        users[stage] = users[""] = user
    return users


def non_root(user: str) -> bool:
    """Whether ``user`` is a numeric uid[:gid] other than 0 (a name could be root)."""
    return all(part.isdigit() and int(part) != 0 for part in user.split(":"))


def compose_user(project: Path, service: dict[str, Any]) -> str:
    """The user a compose service runs as: its ``user``, else its build stage's USER."""
    if service.get("user"):
        return str(service["user"])
    build = service.get("build")
    if build is None:
        return ""  # someone else's image, run as its default user: root unless it says
    build = {"context": build} if isinstance(build, str) else build
    dockerfile = project / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
    return stage_users(dockerfile.read_text()).get(build.get("target", ""), "")


def compose_problems(project: Path) -> list[str]:
    """Root users, writable root filesystems, privileges, host namespaces, a published Redis."""
    compose = yaml.safe_load((project / "docker-compose.yml").read_text())
    problems: list[str] = []
    for name, service in compose["services"].items():
        if not non_root(compose_user(project, service)):
            problems.append(f"service {name}: runs as root (no numeric non-root user)")
        if service.get("read_only") is not True:
            problems.append(f"service {name}: root filesystem not read_only")
        if "ALL" not in service.get("cap_drop", []):
            problems.append(f"service {name}: cap_drop does not contain ALL")
        if "no-new-privileges:true" not in service.get("security_opt", []):
            problems.append(f"service {name}: no no-new-privileges")
        if service.get("privileged"):
            problems.append(f"service {name}: privileged")
        problems += [
            f"service {name}: {key}: host"
            for key in ("network_mode", "pid", "ipc")
            if service.get(key) == "host"
        ]
        if str(service.get("image", "")).startswith("redis") and service.get("ports"):
            problems.append(f"service {name}: publishes Redis's port on the host")
    return problems


@by_pattern
def test_every_compose_service_runs_non_root_read_only(
    pattern: str, generated_project: Callable[[str], Path]
) -> None:
    assert compose_problems(generated_project(pattern)) == []


def test_compose_check_catches_root_and_a_published_redis(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM python:3.11-slim AS base\nUSER 10001\nFROM base AS tool\nFROM python:3.11-slim\n"
    )
    services = {
        "api": {"build": "."},
        "tool": {"build": {"context": ".", "target": "tool"}, "read_only": True},
        "redis": {"image": "redis:7", "ports": ["6379:6379"], "privileged": True},
        "named": {"image": "x", "user": "app", "network_mode": "host"},
    }
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump({"services": services}))
    problems = "\n".join(compose_problems(tmp_path))
    for expected in (
        "service api: runs as root",
        "service api: root filesystem not read_only",
        "service api: cap_drop",
        "service api: no no-new-privileges",
        "service redis: runs as root",
        "service redis: privileged",
        "service redis: publishes Redis",
        "service named: runs as root",
        "service named: network_mode: host",
    ):
        assert expected in problems
    # Built FROM a stage with a non-root USER: that user.
    assert "service tool: runs as root" not in problems


# --------------------------------------------------------------------------- secrets

# A key or variable whose name says it holds a secret (separators and case ignored).
SECRET_NAME = re.compile(r"password|passwd|secret|token|apikey|accesskey|privatekey|credential")
# Keys whose value is the name of a Kubernetes Secret object, not a secret.
NAMES_A_SECRET = {"secretName"}
# A value that is a reference to a secret kept elsewhere, not the secret itself.
REFERENCE = re.compile(r"^(\$\{.*\}|\$\(.*\)|\{\{.*\}\}|<[^>]*>)$")
SECRET_VALUES = {
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "an AWS access key ID": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "a GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "a Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "a JSON Web Token": re.compile(r"\beyJ[\w-]{10,}\.eyJ[\w-]{10,}\.[\w-]+"),
    "a password in a URL": re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]*:[^/\s@'\"$]+@"),
    "a bearer token": re.compile(r"(?i)\bbearer\s+[\w.~+/-]{16,}"),
}
# Long runs of token characters: a secret unless it is a hex digest or has too little entropy.
TOKEN = re.compile(r"[A-Za-z0-9+/=_-]{32,}")
# Config files whose keys are read for names (text files are all read for values).
CONFIG_GLOBS = (
    "manifests/*.yaml",
    "docker-compose.yml",
    ".builder-answers.yml",
    ".github/**/*.yml",
)


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def value_findings(where: str, text: str) -> list[str]:
    """Secret-looking values anywhere in a text."""
    found = [f"{where}: {what}" for what, pattern in SECRET_VALUES.items() if pattern.search(text)]
    for token in TOKEN.findall(text):
        kinds = [
            any(test(char) for char in token) for test in (str.isupper, str.islower, str.isdigit)
        ]
        if all(kinds) and _entropy(token) > 4.0 and not re.fullmatch(r"[0-9a-fA-F]+", token):
            found.append(f"{where}: a random-looking token {token[:6]}...")
    return found


def _secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(re.sub(r"[^a-z]", "", name.lower())))


def named_findings(where: str, data: Any) -> list[str]:
    """Literal values under secret-sounding keys (or env entries) anywhere in YAML data."""
    found: list[str] = []
    if isinstance(data, dict):
        if data.get("kind") == "Secret" and (data.get("data") or data.get("stringData")):
            found.append(f"{where}: a Secret with its values in the manifests")
        named = [(k, v) for k, v in data.items() if isinstance(v, str)]
        if isinstance(data.get("name"), str) and isinstance(data.get("value"), str):
            named.append((data["name"], data["value"]))  # a Kubernetes env entry
        for key, value in named:
            if key in NAMES_A_SECRET:
                continue
            if _secret_name(str(key)) and value.strip() and not REFERENCE.match(value.strip()):
                found.append(f"{where}: {key} holds a literal value")
        children = list(data.values())
    elif isinstance(data, list):
        # KEY=value items, as a compose environment list holds them, are read as a mapping.
        children = [dict([c.split("=", 1)]) if isinstance(c, str) and "=" in c else c for c in data]
    else:
        children = []
    for child in children:
        found += named_findings(where, child)
    return found


def dockerfile_findings(where: str, text: str) -> list[str]:
    """ENV and ARG instructions that set a secret-sounding variable to a literal value."""
    found: list[str] = []
    for match in re.finditer(r"^\s*(?:ENV|ARG)\s+(.+)$", re.sub(r"\\\n", " ", text), re.M | re.I):
        for pair in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", match.group(1)):
            found += named_findings(where, {pair[0]: pair[1].strip("\"'")})
    return found


def build_context(project: Path) -> list[Path]:
    """The files ``docker build`` sends from the project (docker-py's .dockerignore matching)."""
    ignore = project / ".dockerignore"
    lines = ignore.read_text().splitlines() if ignore.is_file() else []
    patterns = [line for line in lines if line.strip() and not line.startswith("#")]
    return sorted(
        project / name
        for name in exclude_paths(str(project), patterns)
        if (project / name).is_file()
    )


def secret_findings(project: Path) -> list[str]:
    """Everything that looks like a secret in what the images, the manifests and the compose
    file are made of, and in the answers file."""
    configs = sorted({path for glob in CONFIG_GLOBS for path in project.glob(glob)})
    found: list[str] = []
    for path in sorted({*configs, *build_context(project)}):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # a model, an image: no text to hold a secret in
        where = str(path.relative_to(project))
        found += value_findings(where, text)
        if path in configs:
            found += [
                item for doc in yaml.safe_load_all(text) for item in named_findings(where, doc)
            ]
        if path.name.startswith("Dockerfile"):
            found += dockerfile_findings(where, text)
    return found


@by_pattern
def test_no_secrets_in_manifests_compose_dockerfiles_or_answers(
    pattern: str, generated_project: Callable[[str], Path]
) -> None:
    assert secret_findings(generated_project(pattern)) == []


PLANTED = {
    "manifests/secret.yaml": "kind: Secret\nstringData:\n  url: x\n",
    "manifests/env.yaml": "env:\n  - name: API_TOKEN\n    value: abc\n  - name: DB_PASSWORD\n"
    "    valueFrom: {secretKeyRef: {name: db, key: pw}}\n",
    "docker-compose.yml": "services:\n  api:\n    environment:\n      - REDIS_PASSWORD=hunter2\n"
    "      - SAFE_PASSWORD=${FROM_ENV}\n",
    ".builder-answers.yml": "variables:\n  model_uri: https://user:pa55word@example.com/m.onnx\n",
    "Dockerfile": "FROM python:3.11-slim\nENV AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIK7MDENGbPxRfiCY\n",
    "src/key.txt": "-----BEGIN RSA PRIVATE KEY-----\nAKIAABCDEFGHIJKLMNOP\n",
    "src/app/token.py": 'TOKEN = "Zx9mQ2vL7pR4tW8yB3nC6kF1hJ5sD0gA"\n',
}


def test_secret_scanner_finds_planted_secrets_and_not_references(tmp_path: Path) -> None:
    for name, text in PLANTED.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = "\n".join(secret_findings(tmp_path))
    for expected in (
        "manifests/secret.yaml: a Secret",
        "manifests/env.yaml: API_TOKEN holds",
        "docker-compose.yml: REDIS_PASSWORD holds",
        ".builder-answers.yml: a password in a URL",
        "Dockerfile: AWS_SECRET_ACCESS_KEY holds",
        "src/key.txt: a private key",
        "src/key.txt: an AWS access key ID",
        "src/app/token.py: a random-looking token",
    ):
        assert expected in found
    assert "DB_PASSWORD" not in found
    assert "SAFE_PASSWORD" not in found
    # Digests and ordinary words are no secrets.
    digest = "sha256:66b06d8e86d8716b2ff065744352ff0c75f175e94ee7a66614391dcb279b48e4"
    assert value_findings("x", f"image: python@{digest}\nautomountServiceAccountToken: false") == []


# Files that hold secrets on a developer's machine, beside the project's own files.
SECRET_FILES = (
    ".env",
    ".env.production",
    "id_rsa",
    "server.pem",
    "tls.key",
    "credentials.json",
    ".git/config",
    ".aws/credentials",
    ".netrc",
    ".pypirc",
    "kubeconfig",
    "secrets/api.txt",
)


@by_pattern
def test_secret_files_beside_the_project_never_reach_an_image(
    pattern: str, generated_project: Callable[[str], Path], tmp_path: Path
) -> None:
    project = shutil.copytree(generated_project(pattern), tmp_path / "project")
    for name in SECRET_FILES:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("not for an image\n")
    context = {str(path.relative_to(project)) for path in build_context(project)}
    assert "run.sh" in context
    assert sorted(context.intersection(SECRET_FILES)) == []


# --------------------------------------------------------------------------- Redis's reach


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector matches ``labels``."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        if (
            (operator == "In" and labels.get(key) not in values)
            or (operator == "NotIn" and labels.get(key) in values)
            or (operator == "Exists" and key not in labels)
            or (operator == "DoesNotExist" and key in labels)
        ):
            return False
    return True


def only_own(selector: dict[str, Any], name: str) -> bool:
    """Whether every pod a selector can match belongs to the service ``name``."""
    if selector.get("matchLabels", {}).get(NAME_LABEL) == name:
        return True
    return any(
        (e["key"], e["operator"], e.get("values")) == (NAME_LABEL, "In", [name])
        for e in selector.get("matchExpressions", [])
    )


def ingress_problems(where: str, policy: dict[str, Any], name: str) -> list[str]:
    """What lets a connection into the pods a NetworkPolicy guards from outside the service."""
    rules = policy["spec"].get("ingress", [])
    problems = [f"{where}: a rule without 'from' admits anyone" for r in rules if not r.get("from")]
    for rule in rules:
        for source in rule.get("from", []):
            if "ipBlock" in source or "namespaceSelector" in source:
                problems.append(f"{where}: admits sources outside the namespace")
            elif not only_own(source.get("podSelector", {}), name):
                problems.append(f"{where}: admits pods of other services")
    return problems


def redis_pods(docs: list[dict[str, Any]]) -> list[tuple[dict[str, str], str | None]]:
    """The labels and namespace of every workload's pods that run a Redis image."""
    return [
        (pod_labels(doc), doc["metadata"].get("namespace"))
        for doc in docs
        if (pod := pod_spec(doc)) and any(c["image"].startswith("redis") for c in pod["containers"])
    ]


def guards(docs: list[dict[str, Any]], labels: dict[str, str], namespace: str | None) -> list[Any]:
    """The NetworkPolicies restricting ingress to pods with ``labels`` in ``namespace``."""
    return [
        doc
        for doc in docs
        if doc["kind"] == "NetworkPolicy"
        and doc["metadata"].get("namespace") == namespace
        and "Ingress" in doc["spec"].get("policyTypes", [])
        and selects(doc["spec"]["podSelector"], labels)
    ]


def redis_reach_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Every Service in front of Redis pods: a ClusterIP, and the pods guarded by NetworkPolicies
    admitting only the service's own pods."""
    problems: list[str] = []
    for service in (doc for doc in docs if doc["kind"] == "Service"):
        where, spec = f"Service {service['metadata']['name']}", service["spec"]
        for labels, namespace in redis_pods(docs):
            if not selects({"matchLabels": spec.get("selector", {})}, labels):
                continue
            if spec.get("type", "ClusterIP") != "ClusterIP" or spec.get("externalIPs"):
                problems.append(f"{where}: type {spec.get('type')} or externalIPs expose Redis")
            policies = guards(docs, labels, namespace)
            if not policies:
                problems.append(f"{where}: no NetworkPolicy guards its Redis pods")
            for policy in policies:
                label = f"NetworkPolicy {policy['metadata']['name']}"
                problems += ingress_problems(label, policy, labels[NAME_LABEL])
    return problems


@by_pattern
def test_redis_is_reachable_only_from_the_services_own_pods(
    pattern: str, generated_project: Callable[[str], Path]
) -> None:
    docs = documents(generated_project(pattern))
    fronted = [
        service
        for service in docs
        if service["kind"] == "Service"
        and any(
            selects({"matchLabels": service["spec"]["selector"]}, pod)
            for pod, _ in redis_pods(docs)
        )
    ]
    # A pattern with Redis puts a Service in front of it; one without has none.
    assert bool(fronted) == ("redis" in load_pattern(pattern).info.components)
    assert redis_reach_problems(docs) == []


def test_redis_reach_check_catches_open_policies() -> None:
    labels = {NAME_LABEL: "svc", "app.kubernetes.io/component": "redis"}
    pod = {"containers": [{"name": "redis", "image": "redis:7"}]}
    redis = {
        "kind": "Deployment",
        "metadata": {"name": "redis", "namespace": "ns"},
        "spec": {"template": {"metadata": {"labels": labels}, "spec": pod}},
    }
    service: dict[str, Any] = {
        "kind": "Service",
        "metadata": {"name": "r"},
        "spec": {"selector": labels},
    }
    assert redis_reach_problems([redis, service]) == [
        "Service r: no NetworkPolicy guards its Redis pods"
    ]
    service["spec"]["type"] = "NodePort"
    rules: list[dict[str, Any]] = [{}, {"from": [{"namespaceSelector": {}}, {"podSelector": {}}]}]
    spec = {"podSelector": {"matchLabels": labels}, "policyTypes": ["Ingress"], "ingress": rules}
    policy = {
        "kind": "NetworkPolicy",
        "metadata": {"name": "open", "namespace": "ns"},
        "spec": spec,
    }
    problems = "\n".join(redis_reach_problems([redis, service, policy]))
    for expected in ("type NodePort", "without 'from'", "outside the namespace", "other services"):
        assert expected in problems


# --------------------------------------------------------------------------- logs, live

MARKER = "qz7payloadmarker"
# Digits no log line holds by chance: the fraction of every number of the marked rows.
ROW_MARKER = "9182736"
REDIS_PASSWORD = "qz7redispassword"  # noqa: S105 - the password of a throwaway Redis


def marked_bodies(example: Any, max_body_bytes: int, rows: bool) -> dict[str, bytes]:
    """Request bodies carrying the markers: refused ones, and (for rows) a valid one."""
    bodies = {
        "wrong type": json.dumps({"data": [[MARKER]]}).encode(),
        "unknown field": json.dumps({**example, MARKER: 1}).encode(),
        "not JSON": f"{MARKER} is not JSON".encode(),
        "too large": json.dumps({"data": MARKER * (max_body_bytes // len(MARKER) + 1)}).encode(),
    }
    if rows:
        marked = [[float(f"{int(value)}.{ROW_MARKER}") for value in row] for row in example["data"]]
        bodies["valid"] = json.dumps({"data": marked}).encode()
    return bodies


@pytest.mark.slow
@by_pattern
def test_logs_never_hold_a_payload_or_the_redis_password(
    pattern: str,
    generated_project: Callable[[str], Path],
    service_python: Callable[[Path], Path],
    tmp_path: Path,
) -> None:
    project = generated_project(pattern)
    info = load_pattern(pattern).info
    limit = yaml.safe_load((project / ".builder-answers.yml").read_text())["variables"]
    # The access log on and the most verbose level: what an operator chasing a problem turns on.
    env = {"ACCESS_LOG": "true", "LOG_LEVEL": "debug"}
    python = service_python(project)
    with running(project, python, info, tmp_path, env, REDIS_PASSWORD) as stack:
        example = json.loads(example_body(stack.base))
        bodies = marked_bodies(example, limit["max_body_bytes"], info.request == "rows")
        statuses = {name: call(f"{stack.base}/predict", body)[0] for name, body in bodies.items()}
        inventory = json.dumps([call(f"{stack.base}{path}")[1] for path in ("/metadata", "/ready")])
    # Read once everything stopped: log lines may be written after the answer went out.
    output = stack.output()
    assert statuses.pop("valid", 200) == 200
    assert set(statuses.values()) <= {413, 422}, statuses
    assert statuses["too large"] == 413
    # Every request got its log line: the markers were there to be echoed, and were not.
    assert output.count("/predict") >= len(bodies), output
    for secret in (MARKER, ROW_MARKER, REDIS_PASSWORD):
        assert secret not in output
        assert secret not in inventory


# --------------------------------------------------------------------------- body size cap, live


def post_over_the_cap(base: str, path: str, size: int, chunked: bool) -> int:
    """POST a JSON body of ``size`` bytes, with a Content-Length or chunked; the status."""
    url = urlsplit(base)
    body = b'{"data": "' + b"x" * (size - 12) + b'"}'
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    headers = {"content-type": "application/json"}
    try:
        if chunked:
            chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
            connection.request("POST", path, chunks, headers, encode_chunked=True)
        else:
            connection.request("POST", path, body, headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def post_paths(schema: dict[str, Any], known: dict[str, str]) -> list[str]:
    """Every POST path of an OpenAPI schema, its path parameters filled in from ``known`` or
    their examples; a path with a parameter that has neither is left out (an unknown name may be
    a 404 first)."""
    paths: list[str] = []
    for path, methods in schema["paths"].items():
        if "post" not in methods:
            continue
        for parameter in methods["post"].get("parameters", []):
            examples = [parameter.get("example"), *parameter.get("schema", {}).get("examples", [])]
            value = known.get(parameter["name"])
            value = value or next(
                (str(example) for example in examples if example is not None), None
            )
            if parameter["in"] == "path" and value is not None:
                path = path.replace(f"{{{parameter['name']}}}", value)
        if "{" not in path:
            paths.append(path)
    return paths


@pytest.mark.slow
@by_pattern
def test_a_body_over_the_cap_is_413_on_every_post_route_chunked_or_not(
    pattern: str,
    generated_project: Callable[[str], Path],
    service_python: Callable[[Path], Path],
    tmp_path: Path,
) -> None:
    project = generated_project(pattern)
    info = load_pattern(pattern).info
    variables = yaml.safe_load((project / ".builder-answers.yml").read_text())["variables"]
    size = 2 * variables["max_body_bytes"]
    # FastAPI's own routing, where a chunked body is read by FastAPI (the fast path reads its own,
    # and test_service.py and bench/soak.py send it bodies over the cap).
    env = {"FAST_PATH": "false"}
    with running(project, service_python(project), info, tmp_path, env) as stack:
        metadata = call(f"{stack.base}/metadata")[1]
        # The V2 routes name the model in their path: this service's own name and version.
        known = {"model_name": metadata["name"], "model_version": metadata["version"]}
        posts = post_paths(call(f"{stack.base}/openapi.json")[1], known)
        statuses = {
            (path, chunked): post_over_the_cap(stack.base, path, size, chunked)
            for path in posts
            for chunked in (False, True)
        }
    assert sum("/v2/models/" in path for path in posts) == 2, posts
    assert set(statuses.values()) == {413}, statuses
