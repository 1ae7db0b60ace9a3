"""Container smoke harness: a generated project's images built and run as its compose file says.

Through the Docker API (the ``docker`` SDK), so the same code drives a Docker daemon or podman's
Docker-compatible service. For one generated project it builds every image from the project's own
Dockerfile(s), starts each compose service in dependency order with the compose file's command,
environment, user, read-only root and tmpfs, waits for the conditions ``depends_on`` names, runs
the project's own ``smoke.py`` against it, reads every container's logs, and always tears down.

Containers use the host network (the only networking that works on every engine here); each
compose service name resolves to 127.0.0.1, so ``redis://redis:6379`` still reaches Redis.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import yaml
from docker.models.containers import Container
from docker.models.images import Image

WAIT_SECONDS = 120
# Image tag → size in bytes, of every image a smoke run built; printed at the end of the session.
IMAGE_SIZES: dict[str, int] = {}


class SmokeError(Exception):
    """A step of the smoke run failed; the message says which, with the logs that explain it."""


@dataclass
class SmokeReport:
    """What one smoke run found: image sizes, each container's logs, and the smoke output."""

    image_sizes: dict[str, int] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    smoke_output: str = ""
    users: dict[str, str] = field(default_factory=dict)
    read_only: dict[str, bool] = field(default_factory=dict)


# What compose substitutes in its file: $$ (a dollar), ${NAME}, ${NAME:-default}, ${NAME-default}.
VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}"
)


def load_services(project: Path) -> dict[str, dict[str, Any]]:
    """The ``services`` of the project's docker-compose.yml, its variables substituted as compose
    does when none of them is set."""
    compose = yaml.safe_load((project / "docker-compose.yml").read_text())
    services: dict[str, dict[str, Any]] = interpolate(compose["services"], {})
    return services


def interpolate(value: Any, environ: Mapping[str, str]) -> Any:
    """``value`` (compose data) with every variable in its strings substituted from ``environ``."""
    if isinstance(value, dict):
        return {key: interpolate(item, environ) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, environ) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        found = environ.get(match["name"])
        unset = not found if match["op"] == ":-" else found is None
        return match["default"] if match["op"] and unset else found or ""

    return VARIABLE.sub(substitute, value)


def start_order(services: dict[str, dict[str, Any]]) -> list[str]:
    """Services ordered so that each comes after everything it depends on."""
    ordered: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise SmokeError(f"depends_on cycle: {' -> '.join((*path, name))}")
        if name not in ordered:
            for dependency in _depends_on(services[name]):
                visit(dependency, (*path, name))
            ordered.append(name)

    for name in services:
        visit(name, ())
    return ordered


def _depends_on(spec: dict[str, Any]) -> dict[str, str]:
    raw = spec.get("depends_on", {})
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: value.get("condition", "service_started") for name, value in raw.items()}


class ComposeSmoke:
    """One smoke run of one generated project."""

    def __init__(self, client: docker.DockerClient, project: Path) -> None:
        self.client = client
        self.project = project
        self.services = load_services(project)
        self.run_id = f"smoke-{uuid.uuid4().hex[:8]}"
        self.containers: dict[str, Container] = {}
        self.volumes: list[str] = []
        self.report = SmokeReport()

    def run(self) -> SmokeReport:
        """Build, start, check, and tear down (also when a step fails)."""
        images = self.build_images()
        try:
            for name in start_order(self.services):
                self.start(name, images)
            self.wait_all_healthy()
            self.check_containers(images)
            self.run_smoke_script()
        finally:
            self.collect_logs()
            self.tear_down()
        return self.report

    def build_images(self) -> dict[str, str]:
        """Build every service with a ``build`` section; service → image tag."""
        tags: dict[str, str] = {}
        for name, spec in self.services.items():
            if "build" not in spec:
                continue
            build = spec["build"] if isinstance(spec["build"], dict) else {"context": spec["build"]}
            tag = spec.get("image") or f"{self.project.name}-{name}:smoke"
            image = self._build(build, tag)
            self.report.image_sizes[tag] = int(image.attrs.get("Size", 0))
            tags[name] = tag
        return tags

    def _build(self, build: dict[str, Any], tag: str) -> Image:
        try:
            image, _ = self.client.images.build(
                path=str(self.project / build.get("context", ".")),
                dockerfile=build.get("dockerfile", "Dockerfile"),
                target=build.get("target"),
                tag=tag,
                pull=False,
                rm=True,
                forcerm=True,
                network_mode="host",
            )
        except docker.errors.BuildError as err:
            tail = "".join(str(line.get("stream", line)) for line in list(err.build_log)[-30:])
            raise SmokeError(f"building {tag} failed: {err.msg}\n{tail}") from err
        return image

    def start(self, name: str, images: dict[str, str]) -> None:
        """Wait for the service's dependencies as compose would, then start it."""
        for dependency, condition in _depends_on(self.services[name]).items():
            self.wait_for(dependency, condition)
        spec = self.services[name]
        image = images.get(name) or spec["image"]
        self.containers[name] = self.client.containers.run(
            image, detach=True, name=f"{self.run_id}-{name}", **self._run_options(spec)
        )

    def _run_options(self, spec: dict[str, Any]) -> dict[str, Any]:
        options: dict[str, Any] = {
            "network_mode": "host",
            "extra_hosts": dict.fromkeys(self.services, "127.0.0.1"),
            "environment": spec.get("environment", {}),
            "read_only": bool(spec.get("read_only", False)),
            # "path[:options]", as docker run --tmpfs takes it.
            "tmpfs": dict(entry.partition(":")[::2] for entry in spec.get("tmpfs", [])),
            "cap_drop": spec.get("cap_drop"),
            "security_opt": spec.get("security_opt"),
            "volumes": self._volumes(spec.get("volumes", [])),
        }
        for key in ("command", "entrypoint", "user", "working_dir"):
            if key in spec:
                options[key] = spec[key]
        return {key: value for key, value in options.items() if value is not None}

    def _volumes(self, entries: list[str]) -> dict[str, dict[str, str]]:
        """Named volumes (``name:/path[:ro]``), created for this run only."""
        mounts: dict[str, dict[str, str]] = {}
        for entry in entries:
            source, target, *mode = entry.split(":")
            volume = f"{self.run_id}-{source}"
            if volume not in self.volumes:
                self.client.volumes.create(volume)
                self.volumes.append(volume)
            mounts[volume] = {"bind": target, "mode": mode[0] if mode else "rw"}
        return mounts

    def wait_for(self, name: str, condition: str) -> None:
        """Block until ``name`` meets a compose ``depends_on`` condition."""
        container = self.containers[name]
        if condition == "service_completed_successfully":
            status = container.wait(timeout=WAIT_SECONDS)["StatusCode"]
            if status != 0:
                raise SmokeError(f"{name} exited with {status}:\n{_logs(container)}")
        elif condition == "service_healthy":
            self.wait_healthy(name)

    def wait_healthy(self, name: str) -> None:
        """Run the service's own healthcheck command in it until it passes."""
        test = self.services[name].get("healthcheck", {}).get("test")
        if not test:
            return
        command = ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else list(test[1:])
        container = self.containers[name]
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            container.reload()
            if container.status == "exited":
                raise SmokeError(f"{name} exited before it was healthy:\n{_logs(container)}")
            if container.exec_run(command).exit_code == 0:
                return
            time.sleep(1)
        raise SmokeError(f"{name} was not healthy within {WAIT_SECONDS} s:\n{_logs(container)}")

    def wait_all_healthy(self) -> None:
        """Every long-running service passes its healthcheck."""
        for name, container in self.containers.items():
            container.reload()
            if container.status == "running":
                self.wait_healthy(name)

    def check_containers(self, images: dict[str, str]) -> None:
        """Record the user and root filesystem of every container built from the project."""
        for name in images:
            container = self.containers[name]
            container.reload()
            self.report.read_only[name] = bool(container.attrs["HostConfig"]["ReadonlyRootfs"])
            if container.status == "running":
                output = container.exec_run(["id", "-u"]).output
                assert isinstance(output, bytes)  # not streamed: exec_run returns the bytes
                self.report.users[name] = output.decode().strip()

    def run_smoke_script(self) -> None:
        """The project's own smoke.py against the published port of the HTTP service."""
        url = f"http://127.0.0.1:{self._http_port()}"
        result = subprocess.run(
            [sys.executable, str(self.project / "smoke.py"), url],
            capture_output=True,
            text=True,
            timeout=WAIT_SECONDS + 60,
            check=False,
        )
        self.report.smoke_output = result.stdout + result.stderr
        if result.returncode != 0:
            raise SmokeError(f"smoke.py failed against {url}:\n{self.report.smoke_output}")

    def _http_port(self) -> int:
        for spec in self.services.values():
            for mapping in spec.get("ports", []):
                return int(str(mapping).split(":")[-1].split("/")[0])
        raise SmokeError("no service publishes a port in docker-compose.yml")

    def collect_logs(self) -> None:
        """Every container's output, kept in the report."""
        for name, container in self.containers.items():
            self.report.logs[name] = _logs(container)

    def tear_down(self) -> None:
        """Remove this run's containers and volumes; images stay as a build cache."""
        for container in self.containers.values():
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                continue
        for volume in self.volumes:
            try:
                self.client.volumes.get(volume).remove(force=True)
            except docker.errors.NotFound:
                continue


def _logs(container: Container) -> str:
    try:
        return bytes(container.logs()).decode(errors="replace")
    except docker.errors.APIError as err:
        return f"(no logs: {err})"


def port_is_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:``port`` (host networking needs the compose ports free)."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@contextmanager
def engine(base_url: str) -> Iterator[docker.DockerClient]:
    """A client of the engine at ``base_url``."""
    client = docker.DockerClient(base_url=base_url, timeout=600)
    try:
        client.ping()
        yield client
    finally:
        client.close()
