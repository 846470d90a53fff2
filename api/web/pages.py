"""Routes of the web UI (see :mod:`api.web`)."""

from __future__ import annotations

import html
from functools import cache
from pathlib import Path
from typing import Final

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError
from core.errors import ErrorCode

log = structlog.get_logger(__name__)

ASSETS_PATH: Final = "/web-assets"
VENDOR_PATH: Final = f"{ASSETS_PATH}/vendor"
_HERE = Path(__file__).resolve().parent
STATIC_DIR: Final = _HERE / "static"
#: ``node_modules`` of the checkout (``make install`` runs ``npm ci`` there).
NODE_MODULES: Final = _HERE.parents[1] / "node_modules"
#: The only files served from ``node_modules``: URL name → path inside it.
VENDOR_FILES: Final = {
    "marked.esm.js": "marked/lib/marked.esm.js",
    "purify.es.mjs": "dompurify/dist/purify.es.mjs",
}

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; connect-src 'self'; form-action 'self'"
)
_SECURITY_HEADERS: Final = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
#: Swagger UI and ReDoc inline their bootstrap script: they keep FastAPI's pages as they are.
_UNGUARDED_PREFIXES: Final = ("/docs", "/redoc")

#: path → (page name, title). ``admin`` shows only to callers with an admin permission.
PAGES: Final = {
    "/sign-in": ("sign-in", "Sign in"),
    "/chat": ("chat", "Chat"),
    "/documents": ("documents", "Documents"),
    "/approvals": ("approvals", "Approvals"),
    "/settings": ("settings", "Settings"),
    "/admin": ("admin", "Admin"),
}


class SecurityHeadersMiddleware:
    """Adds the CSP (and nosniff, no-referrer, DENY framing) to every response except the
    API docs pages: the web pages, their assets, and the API's JSON and streams alike."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith(_UNGUARDED_PREFIXES):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in _SECURITY_HEADERS}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message["headers"] = [*headers, *_SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


@cache
def _shell() -> str:
    return (_HERE / "shell.html").read_text(encoding="utf-8")


def render_page(request: Request, page: str, title: str) -> str:
    """The shell for ``page``: same-origin URLs only (the ``root_path`` prefix included)."""
    root = str(request.scope.get("root_path", ""))
    resources = request.app.state.resources
    settings = request.app.state.settings
    oidc = resources is not None and resources.oidc is not None and resources.oidc.sign_in is not None
    values = {
        "root": root,
        "page": page,
        "title": title,
        "assets": f"{root}{ASSETS_PATH}",
        "auth_mode": settings.auth_mode,
        "oidc_login": "1" if oidc else "0",
    }
    text = _shell()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", html.escape(value, quote=True))
    return text


def add_web_routes(app: FastAPI) -> None:
    """Serve the pages, their assets and the vendored browser libraries."""
    missing = [name for name, rel in VENDOR_FILES.items() if not (NODE_MODULES / rel).is_file()]
    if missing:
        log.warning("web.vendor_missing", files=missing, hint="run `make install` (npm ci)")

    @app.get(f"{VENDOR_PATH}/{{name}}", include_in_schema=False)
    async def vendor_file(name: str) -> FileResponse:
        rel = VENDOR_FILES.get(name)
        if rel is None or not (NODE_MODULES / rel).is_file():
            raise ApiError(ErrorCode.ROUTE_NOT_FOUND, "no such asset")
        return FileResponse(NODE_MODULES / rel, media_type="text/javascript")

    app.mount(ASSETS_PATH, StaticFiles(directory=STATIC_DIR), name="web-assets")

    @app.get("/", include_in_schema=False)
    async def home(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{request.scope.get('root_path', '')}/chat", status_code=303)

    for path, (page, title) in PAGES.items():
        _add_page(app, path, page, title)


def _add_page(app: FastAPI, path: str, page: str, title: str) -> None:
    async def show(request: Request) -> HTMLResponse:
        return HTMLResponse(render_page(request, page, title), headers={"Cache-Control": "no-store"})

    app.add_api_route(path, show, methods=["GET"], include_in_schema=False, name=f"web_{page}")
