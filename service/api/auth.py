"""API keys and cross-site protection.

Keys come from SIMGAN_API_KEYS (`scope:key` pairs; core.settings). Scopes: `refine` lets a
client refine and read models (what a simulator needs), `admin` lets it do everything. Clients send
`Authorization: Bearer KEY`; Swagger UI's Authorize button sends the same. Without keys every
route is open, and `simgan serve` then binds only loopback addresses (simgan/commands/serve.py).
/healthz, /readyz, /metrics and the docs stay open: probes and scrapers carry no key.

Cross-site requests: a web page in a browser on this machine can send "simple" requests
(form posts, `text/plain` bodies) to a service on 127.0.0.1 without any preflight. Requests that
change state carry an `Origin` or `Sec-Fetch-Site` header when a browser sends them, and one from
another origin is refused (403) before the route runs. Clients that are not browsers send neither.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.schemas import Problem

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="APIKey",
    description="A key from SIMGAN_API_KEYS, sent as `Authorization: Bearer KEY` (scopes: refine, admin).",
)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class AuthError(Exception):
    """401 (no key, or not a known one) or 403 (a key without the scope); `detail` says which."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


def key_scope(scopes: dict[str, str], offered: str) -> str | None:
    """The scope of `offered`, compared with every key in constant time (no timing hints)."""
    found = None
    for key, scope in scopes.items():
        if hmac.compare_digest(key.encode(), offered.encode()):
            found = scope
    return found


def check_key(
    request: Request, credentials: HTTPAuthorizationCredentials | None, scopes: dict[str, str], needed: str
) -> None:
    """Nothing when no keys are set or the request's key has `needed` (or admin); AuthError if not."""
    if not scopes:
        return
    route = request.scope.get("route")
    what = f"{request.method} {getattr(route, 'path', request.url.path)}"
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise AuthError(
            401,
            f"{what} needs an API key: send the header `Authorization: Bearer KEY` (keys: SIMGAN_API_KEYS)",
        )
    scope = key_scope(scopes, credentials.credentials)
    if scope is None:
        raise AuthError(401, f"{what}: the API key sent is not one of this service's keys (SIMGAN_API_KEYS)")
    if scope != "admin" and scope != needed:
        raise AuthError(
            403, f"{what} needs a key with scope '{needed}' or 'admin'; this key has scope '{scope}'"
        )


def auth_error_response(exc: AuthError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


def cross_site(headers: dict[str, str], scheme: str) -> str | None:
    """Why a state-changing request comes from another site (a browser says so), or None."""
    fetch_site = headers.get("sec-fetch-site", "")
    if fetch_site in ("cross-site", "same-site"):
        return f"Sec-Fetch-Site: {fetch_site}"
    origin = headers.get("origin")
    if origin is None:
        return None
    parts = urlsplit(origin)
    host = headers.get("host", "")
    if origin == "null" or parts.netloc.lower() != host.lower() or parts.scheme not in ("http", "https"):
        return f"Origin {origin} is not this service ({scheme}://{host})"
    return None


class SameOriginWrites:
    """ASGI middleware: POST, PUT, PATCH and DELETE from another origin get 403 before any route runs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            reason = cross_site(headers, scope.get("scheme", "http"))
            if reason is not None:
                response = JSONResponse(
                    {
                        "detail": f"cross-site {scope['method']} refused ({reason}): requests that change "
                        "state must come from this service's own pages or from a client that is not a browser"
                    },
                    status_code=403,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        "model": Problem,
        "description": "No API key, or not a known one (only when SIMGAN_API_KEYS is set)",
    },
    403: {
        "model": Problem,
        "description": "The key lacks the scope, or a cross-site request tried to change state",
    },
}
"""What every route behind a key can answer."""
