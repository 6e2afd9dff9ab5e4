"""The Flask blueprint that serves the tenant page behind the same basic auth as the API.

The page itself holds no secret and no data: the browser asks for the binding's
credentials once (401 + ``WWW-Authenticate: Basic``), then sends them again with every
``fetch()`` to ``/api/v1/...`` because the realm is the same. Everything the page shows
comes through the gateway's enforced Prometheus API, so the page cannot widen what a
tenant sees; it only makes it readable.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, g, jsonify, request

from common.errors import TenantMetricsError, Unauthenticated, UpstreamError

UI_PREFIX = "/ui"
DEFAULT_REALM = "tenant-metrics"
# The Grafana dashboards tenants import (dashboards/ in the source tree, which is what
# `cf push` uploads); offered for download on the page when present.
DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "dashboards"
_DASHBOARD_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*\.json$")

# Files the page is made of: a fixed allow-list, so no path from the URL reaches the disk.
_ASSETS: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "chart.js": "text/javascript; charset=utf-8",
    "errors.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}

# Only our own files; data reaches the DOM as text, never as markup (see app.js).
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

# The gateway's credential check on the raw Authorization header (``Authenticator.authenticate``).
Authenticate = Callable[[str | None], Any]


def _read_asset(name: str) -> bytes:
    return resources.files("gateway.ui").joinpath("static", name).read_bytes()


def _page(status: int, title: str, message: str, hint: str) -> Response:
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title>"
        '<link rel=stylesheet href="static/style.css"></head><body><main class="notice">'
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>"
        f"<p class=hint>{html.escape(hint)}</p></main></body></html>"
    )
    return Response(body, status=status, mimetype="text/html")


def _unauthorized(realm: str, reason: str) -> Response:
    resp = _page(
        401,
        "Sign in with your service key",
        f"{reason} This page needs the username and password of a tenant-metrics "
        "binding or service key.",
        "Run `cf service-key INSTANCE KEY` (or `cf env APP` for a binding) and sign in with "
        "the username and password shown there. If you deleted or rotated that key, use the "
        "new one: close this browser window first so it forgets the old password.",
    )
    resp.headers["WWW-Authenticate"] = f'Basic realm="{realm}", charset="UTF-8"'
    return resp


def _read_dashboards(directory: Path) -> dict[str, bytes]:
    if not directory.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.json")) if _DASHBOARD_NAME.match(p.name)}


def create_ui_blueprint(
    authenticate: Authenticate, *, realm: str = DEFAULT_REALM, dashboard_dir: Path = DASHBOARD_DIR
) -> Blueprint:
    """The tenant page at ``/ui/``.

    ``authenticate(authorization_header)`` is the gateway's own credential check (its
    ``Authenticator.authenticate``): it returns the tenant, or raises ``Unauthenticated``
    (or returns ``None``) when the credentials are missing, wrong or revoked. ``realm`` must be the realm the API's 401 names, so the
    browser reuses the password it was given for the page when the page calls the API.
    """
    bp = Blueprint("tenant_ui", __name__, url_prefix=UI_PREFIX)
    assets = {name: (_read_asset(name), ctype) for name, ctype in _ASSETS.items()}
    dashboards = _read_dashboards(dashboard_dir)

    @bp.before_request
    def _require_credentials() -> Response | None:
        try:
            tenant = authenticate(request.headers.get("Authorization"))
        except Unauthenticated as exc:
            return _unauthorized(realm, str(exc) or "Your credentials were not accepted.")
        except UpstreamError:
            return _page(
                503,
                "Temporarily unavailable",
                "The gateway cannot check credentials right now (its database is unreachable).",
                "Nothing is wrong with your key. Try again in a minute; if it persists, "
                "contact the platform operators.",
            )
        except TenantMetricsError as exc:
            return _page(400, "Request refused", str(exc), "Reload the page.")
        if tenant is None:
            return _unauthorized(realm, "Your credentials were not accepted.")
        g.tenant_ui_tenant = tenant
        return None

    def _serve(name: str) -> Response:
        if name not in assets:
            abort(404)
        body, ctype = assets[name]
        resp = Response(body, status=200, content_type=ctype)
        # Per-tenant responses behind auth: never cached by shared caches.
        resp.headers["Cache-Control"] = "private, no-cache"
        return resp

    @bp.get("/")
    def index() -> Response:
        return _serve("index.html")

    @bp.get("/static/<string:name>")
    def static_file(name: str) -> Response:
        return _serve(name)

    @bp.get("/session")
    def session() -> Response:
        """Who the page is signed in as: the username and the plan's scope, nothing secret."""
        tenant = g.tenant_ui_tenant
        scope = getattr(tenant, "scope", None)
        resp = jsonify(
            {
                "username": getattr(tenant, "username", None),
                "scope": str(scope) if scope is not None else None,
            }
        )
        resp.headers["Cache-Control"] = "private, no-store"
        return resp

    @bp.get("/dashboards/")
    def dashboard_list() -> Response:
        return jsonify({"dashboards": sorted(dashboards)})

    @bp.get("/dashboards/<string:name>")
    def dashboard_file(name: str) -> Response:
        if name not in dashboards:
            abort(404)
        resp = Response(dashboards[name], status=200, content_type="application/json")
        resp.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return resp

    @bp.after_request
    def _headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = _CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["X-Frame-Options"] = "DENY"
        return resp

    return bp
