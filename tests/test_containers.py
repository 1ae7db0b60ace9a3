"""Every pattern's images built from its own Dockerfiles and run as its compose file says.

Runs against a Docker daemon where one answers, else podman's Docker-compatible service, which
``scripts/container-engine.sh`` installs and starts (CI=true does it; elsewhere set
BUILDER_CONTAINER_TESTS=1). A machine with neither skips these tests, saying why; CI never does.
"""

from __future__ import annotations

import http.client
import os
import shlex
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from conftest import REPO
from container_smoke import IMAGE_SIZES, ComposeSmoke, engine, load_services, port_is_free

from builder_core import build, pattern_names

pytestmark = pytest.mark.slow


def _answers(url: str) -> bool:
    """An engine answers GET /_ping on the unix socket ``url``."""
    if not url.startswith("unix://"):
        return False
    connection = http.client.HTTPConnection("localhost", timeout=3)
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(3)
            sock.connect(url.removeprefix("unix://"))
            connection.sock = sock
            connection.request("GET", "/_ping")
            return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _engine_url() -> str | None:
    """DOCKER_HOST or the default socket, if an engine answers there."""
    for url in (os.environ.get("DOCKER_HOST"), "unix:///var/run/docker.sock"):
        if url and _answers(url):
            return url
    return None


def _provision() -> str:
    """Install and start podman's service; export what it prints; the DOCKER_HOST."""
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "container-engine.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"provisioning the container engine failed:\n{result.stderr}")
    for word in shlex.split(result.stdout.strip().removeprefix("export ")):
        key, _, value = word.partition("=")
        os.environ[key] = value
    return os.environ["DOCKER_HOST"]


@pytest.fixture(scope="session")
def engine_url() -> str:
    """The Docker API to run the smoke tests against."""
    url = _engine_url()
    if url is not None:
        return url
    if os.environ.get("CI") == "true" or os.environ.get("BUILDER_CONTAINER_TESTS") == "1":
        return _provision()
    pytest.skip("no container engine answers; BUILDER_CONTAINER_TESTS=1 provisions podman (as CI)")


@pytest.fixture(scope="session")
def client(engine_url: str) -> Iterator[docker.DockerClient]:
    """A client of the engine."""
    with engine(engine_url) as connected:
        yield connected


@pytest.mark.parametrize("pattern", pattern_names())
def test_pattern_runs_in_containers(
    pattern: str, client: docker.DockerClient, tmp_path: Path
) -> None:
    project = build(pattern=pattern, name=pattern, output_dir=tmp_path).target
    ports = [
        int(str(mapping).split(":")[-1].split("/")[0])
        for spec in load_services(project).values()
        for mapping in spec.get("ports", [])
    ]
    busy = [port for port in ports if not port_is_free(port)]
    assert not busy, f"host ports {busy} are taken; the containers use host networking"
    report = ComposeSmoke(client, project).run()
    IMAGE_SIZES.update(report.image_sizes)
    assert "FAILED" not in report.smoke_output
    for name, logs in report.logs.items():
        assert "Traceback" not in logs, f"{name}:\n{logs}"
    for name, uid in report.users.items():
        assert uid.isdigit() and uid != "0", f"{name} runs as {uid!r}"
    assert all(report.read_only.values()), report.read_only
