"""/docs and /redoc served with assets from the installed fastapi-offline package, so the
docs work with no internet access (air-gapped networks, strict CSPs, CDN outages).

Each page is rendered once, at start-up, with a Content-Security-Policy that lets it load the
app's own assets and run only its own inline scripts (by hash); what it may fetch is the app
itself. Swagger UI keeps no authorization: what is typed into Authorize (the password
included) and the tokens it gets live in the page's memory and are gone on reload, never in
localStorage, where any script on the origin and anyone at the browser could read them.
"""

import base64
import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs-assets"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
REDOC_BUNDLE_URL = f"{ASSETS_URL}/redoc.standalone.js"
# ReDoc 2 always draws the Redocly logo in its menu from this CDN address, with no option to
# turn it off; the bundle is served with the address swapped for an empty inline image.
REDOC_CDN_LOGO_URL = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
EMPTY_IMAGE_URL = b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"
# The page's inline scripts (Swagger UI's set-up, the OAuth2 redirect) join 'self' by hash.
# Styles: both UIs set inline style attributes and ReDoc writes <style> elements at run time.
# Images: Swagger UI's icons and the ReDoc logo above are data: URLs. ReDoc runs its search
# in a Worker made from a blob: URL.
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'{script_hashes}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; worker-src blob:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


@cache
def redoc_bundle() -> bytes:
    # Read on the first request for it, not at start-up: the bundle is 1 MiB, and a worker
    # that never serves /redoc should not hold it.
    bundle = (ASSETS_DIR / "redoc.standalone.js").read_bytes()
    return bundle.replace(REDOC_CDN_LOGO_URL, EMPTY_IMAGE_URL)


@dataclass(frozen=True)
class DocsPage:
    """A docs page rendered once; every request gets a response of its own, since middleware
    may change a response's headers in place."""

    body: bytes
    content_security_policy: str

    @classmethod
    def of(cls, page: HTMLResponse) -> "DocsPage":
        """The page with DOCS_CONTENT_SECURITY_POLICY, its own inline scripts allowed by hash."""
        body = bytes(page.body)
        script_hashes = "".join(
            f" 'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
            for script in _INLINE_SCRIPT.findall(body.decode())
        )
        policy = DOCS_CONTENT_SECURITY_POLICY.format(script_hashes=script_hashes)
        return cls(body, policy)

    def response(self) -> HTMLResponse:
        return HTMLResponse(
            self.body, headers={"content-security-policy": self.content_security_policy}
        )


def install_docs(app: FastAPI) -> None:
    openapi_url = app.openapi_url or "/openapi.json"

    # Declared before the mount, so it answers for the bundle instead of the file on disk.
    @app.get(REDOC_BUNDLE_URL, include_in_schema=False)
    async def redoc_bundle_js() -> Response:
        return Response(redoc_bundle(), media_type="text/javascript")

    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    swagger_ui_page = DocsPage.of(
        get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=OAUTH2_REDIRECT_URL,
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        )
    )
    redirect_page = DocsPage.of(get_swagger_ui_oauth2_redirect_html())
    redoc_page = DocsPage.of(
        get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=REDOC_BUNDLE_URL,
            redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
    )

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return swagger_ui_page.response()

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return redirect_page.response()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return redoc_page.response()
