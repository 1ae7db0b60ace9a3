"""``/docs`` works with no network beyond the service: nothing is loaded from a CDN."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_docs_load_their_assets_from_the_service_itself(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
    assert any(url.endswith("swagger-ui-bundle.js") for url in urls)
    for url in urls:
        assert url.startswith("/"), f"{url} is not served by the service"
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url


def test_the_page_reads_the_services_own_openapi(client: TestClient) -> None:
    page = client.get("/docs").text
    assert "'/openapi.json'" in page or '"/openapi.json"' in page


def test_redoc_is_not_served(client: TestClient) -> None:
    # It would load its script from a CDN.
    assert client.get("/redoc").status_code == 404
