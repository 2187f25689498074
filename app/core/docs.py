"""Swagger UI at /docs from files installed with the package (no CDN: back offices often have no internet). The
files come from the pinned `fastapi-offline` wheel (Swagger UI 5 and a favicon). No ReDoc: its bundle loads a
logo from a CDN, and Swagger UI is the console administrators use."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))

# What an administrator needs: tags collapsed (the tag list reads as a table of contents, in the order of the
# work), a filter box, and how long each call took.
# Tags and operations keep the spec's order (no sorter).
SWAGGER_UI_PARAMETERS: dict[str, object | None] = {
    "docExpansion": "none",
    "filter": True,
    "displayRequestDuration": True,
    "defaultModelsExpandDepth": 0,
    "validatorUrl": None,  # else Swagger UI sends the spec's address to validator.swagger.io for a badge
}


def install_docs(app: FastAPI) -> None:
    """Call with an app created with `docs_url=None, redoc_url=None`."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    def _root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )
