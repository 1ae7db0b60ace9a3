"""``/docs`` renders in a real browser that can reach nothing but 127.0.0.1.

Debian's headless Chromium (``chromium-headless-shell``, installed by ``scripts/system-deps.sh``)
loads the page of a running web-single service, runs its scripts and dumps the DOM it built. Host
names resolve to nothing and every other address goes to a dead proxy, so a script or stylesheet
from a CDN would leave the page blank: the control test shows that this is what happens.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from live import Stack, running

from builder_core.patterns import load_pattern

pytestmark = pytest.mark.slow
BROWSER = "chromium-headless-shell"
LOOPBACK_ONLY = (
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    # Loopback bypasses a proxy; everything else meets a port nothing listens on.
    "--proxy-server=http://127.0.0.1:9",
)


def rendered(url: str) -> str:
    """The DOM of ``url`` once its scripts have run (up to 15 s of page time)."""
    path = shutil.which(BROWSER)
    if path is None:
        pytest.fail(f"{BROWSER} is required (scripts/system-deps.sh installs it)")
    done = subprocess.run(
        # --no-sandbox: the suite runs as root in CI, where Chromium's sandbox refuses to start.
        [path, "--no-sandbox", *LOOPBACK_ONLY, "--virtual-time-budget=15000", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


@pytest.fixture(scope="module")
def stack(
    generated_project: Callable[[str], Path],
    service_python: Callable[[Path], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    project = generated_project("web-single")
    folder = tmp_path_factory.mktemp("docs-browser")
    with running(project, service_python(project), load_pattern("web-single").info, folder) as up:
        yield up


def test_every_operation_of_the_api_renders(stack: Stack) -> None:
    with urllib.request.urlopen(f"{stack.base}/openapi.json", timeout=10) as response:
        paths = set(json.load(response)["paths"])
    dom = rendered(f"{stack.base}/docs")
    shown = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    assert shown == paths
    assert "/predict" in shown


@pytest.fixture
def cdn_page(tmp_path: Path) -> Iterator[str]:
    """A page whose script comes from a CDN, served on 127.0.0.1."""
    (tmp_path / "index.html").write_text(
        "<html><head><title>before</title>"
        '<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js">'
        "</script></head><body><script>"
        "document.title = typeof SwaggerUIBundle === 'undefined' ? 'blocked' : 'loaded';"
        "</script></body></html>"
    )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()


def test_the_browser_reaches_nothing_beyond_loopback(cdn_page: str) -> None:
    assert "<title>blocked</title>" in rendered(cdn_page)
