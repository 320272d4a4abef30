"""The interactive docs, /docs (Swagger UI) and /redoc (ReDoc), from files the package installs.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so they are blank on a machine without
internet. The `fastapi-offline` wheel ships both bundles (and a favicon); they are served here from
/docs-static, and nothing the pages load comes from anywhere else.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(fastapi_offline.__file__).parent / "static"
STATIC_URL = "/docs-static"

SWAGGER_PARAMETERS = {
    "tryItOutEnabled": True,  # the first click on an operation shows a form that can be executed
    "displayRequestDuration": True,
    "defaultModelsExpandDepth": 0,  # the operations first; the schemas are a click away
}


CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)
"""The pages may load nothing from elsewhere: ReDoc's footer logo points at a CDN (it hides itself
when the image fails), and a browser that obeys this never even tries."""


def _own_files_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page


def install_docs(app: FastAPI) -> None:
    """/docs, /docs/oauth2-redirect and /redoc on `app` (built with docs_url=None, redoc_url=None)."""
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="docs-static")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url=f"{STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_URL}/favicon.png",
            swagger_ui_parameters=SWAGGER_PARAMETERS,
        )
        return _own_files_only(page)

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{STATIC_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{STATIC_URL}/favicon.png",
            with_google_fonts=False,  # fonts from the internet: the page falls back to the system's
        )
        return _own_files_only(page)
