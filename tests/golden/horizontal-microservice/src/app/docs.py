"""``/docs``: Swagger UI served by the service itself, never from a public CDN.

FastAPI's own page loads Swagger UI's script and stylesheet from a CDN: a blank page in an
air-gapped cluster, and a third-party script inside a production service. Here the page is
FastAPI's, its assets the copies packaged by ``fastapi-swagger`` (pinned in requirements.txt),
mounted under ``/docs/assets``. ReDoc, which would need a CDN too, is not served.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"


def install(app: FastAPI) -> None:
    """Serve ``/docs`` and its assets on ``app`` (created with ``docs_url=None``)."""
    folder = files("fastapi_swagger").joinpath("resources")
    app.mount(ASSETS, StaticFiles(directory=str(folder)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )
