"""The aiohttp sub-application that serves the tenant page behind the same basic auth as the API.

The page itself holds no secret and no data: the browser asks for the binding's
credentials once (401 + ``WWW-Authenticate: Basic``), then sends them again with every
``fetch()`` to ``/api/v1/...`` because the realm is the same. Everything the page shows
comes through the gateway's enforced Prometheus API, so the page cannot widen what a
tenant sees; it only makes it readable.

The gateway mounts it with ``app.add_subapp(UI_PREFIX, create_ui_app(...))``; the
credential check and the security headers live in the sub-application's middleware, so
they apply to its routes only.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.sso import pages as sso_pages
from gateway.sso.dashboard import SESSION, DashboardSso, SessionEnded
from tenant_metrics.core.errors import Forbidden, TenantMetricsError, Unauthenticated, UpstreamError

UI_PREFIX = "/ui"
DEFAULT_REALM = "tenant-metrics"
# The Grafana dashboards tenants import (package data of tenant_metrics.dashboards),
# offered for download on the page.
DASHBOARD_DIR = Path(str(resources.files("tenant_metrics.dashboards")))
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
_SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    # No Referer to other origins; not "no-referrer", under which browsers send `Origin: null`
    # with the page's own form POSTs (sign-out), which the same-origin check must refuse.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}

# The gateway's credential check on the raw Authorization header: returns the tenant (with
# ``.username`` and ``.scope``) or None, or raises Unauthenticated / UpstreamError / ...
Authenticate = Callable[[str | None], Awaitable[Any]]

# The signed-in tenant, set by the middleware for the handlers.
_TENANT: web.RequestKey[Any] = web.RequestKey("tenant_ui_tenant", object)
# "/ui" without the slash: redirected to "/ui/" before any credential check.
_SLASH_ROUTE = "tenant_ui_slash"
# The stylesheet, served to anyone (it holds nothing about a tenant): the sign-in, error and
# signed-out pages link it when the browser has no credentials, and a 401 for it would make
# the browser ask for a password on a page that is only telling the user something.
_STYLE_ROUTE = "tenant_ui_style"


def _read_asset(name: str) -> bytes:
    return resources.files("gateway.ui").joinpath("static", name).read_bytes()


def _page(status: int, title: str, message: str, hint: str) -> web.Response:
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title>"
        '<link rel=stylesheet href="static/style.css"></head><body><main class="notice">'
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>"
        f"<p class=hint>{html.escape(hint)}</p></main></body></html>"
    )
    resp = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _unauthorized(realm: str, reason: str, sso: bool = False) -> web.Response:
    hint = (
        "Run `cf service-key INSTANCE KEY` (or `cf env APP` for a binding) and sign in with "
        "the username and password shown there. If you deleted or rotated that key, use the "
        "new one: close this browser window first so it forgets the old password."
    )
    if sso:
        hint = ("To sign in with your Cloud Foundry account, open the dashboard link of your "
                "service instance (`cf service INSTANCE` shows it). " + hint)
    resp = _page(
        401,
        "Sign in with your service key",
        f"{reason} This page needs the username and password of a tenant-metrics "
        "binding or service key.",
        hint,
    )
    resp.headers["WWW-Authenticate"] = f'Basic realm="{realm}", charset="UTF-8"'
    return resp


def _session_invalid(realm: str, exc: Exception) -> web.Response:
    """No Basic challenge: the browser would prompt for a password. The cookie is cleared
    with this answer, so a reload offers the service-key prompt."""
    resp = _page(401, "Sign in again", f"Your Cloud Foundry sign-in is not valid any more ({exc}).",
                 "Open the dashboard link of your service instance (`cf service INSTANCE` "
                 "shows it) to sign in again, or reload this page to use a service key.")
    resp.headers["WWW-Authenticate"] = f'Bearer realm="{realm}"'
    return resp


def _json(data: object, cache_control: str | None = None) -> web.Response:
    # The same bytes Flask's jsonify wrote: compact, sorted keys, trailing newline.
    body = json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n"
    resp = web.Response(body=body.encode(), content_type="application/json")
    if cache_control is not None:
        resp.headers["Cache-Control"] = cache_control
    return resp


def _read_dashboards(directory: Path) -> dict[str, bytes]:
    if not directory.is_dir():
        return {}
    return {
        p.name: p.read_bytes()
        for p in sorted(directory.glob("*.json"))
        if _DASHBOARD_NAME.match(p.name)
    }


def create_ui_app(
    authenticate: Authenticate, *, realm: str = DEFAULT_REALM, dashboard_dir: Path = DASHBOARD_DIR,
    sso: DashboardSso | None = None,
) -> web.Application:
    """The tenant page, to mount at ``/ui`` with ``app.add_subapp(UI_PREFIX, ...)``.

    ``authenticate(authorization_header)`` is the gateway's own credential check: it
    returns the tenant, or raises ``Unauthenticated`` (or returns ``None``) when the
    credentials are missing, wrong or revoked. ``realm`` must be the realm the API's 401
    names, so the browser reuses the password it was given for the page when the page
    calls the API. With ``sso``, a session cookie (and no Authorization header) signs in
    too, and the sign-in routes are served here (gateway/sso/dashboard.py).
    """
    assets = {name: (_read_asset(name), ctype) for name, ctype in _ASSETS.items()}
    dashboards = _read_dashboards(dashboard_dir)

    async def _check_session(request: web.Request) -> web.StreamResponse | None:
        assert sso is not None
        try:
            request[_TENANT] = await sso.admit(request)
        except SessionEnded as exc:
            if exc.instance is None:
                return _session_invalid(realm, exc)
            # Ran out: sign in again at once (the login server remembers the user).
            raise web.HTTPSeeOther(f"{UI_PREFIX}/instances/{exc.instance}") from None
        except Forbidden as exc:
            return _page(403, "No access", str(exc), "Ask a Space Manager or Org Manager for a role in "
                         "the instance's space, then open the dashboard link again.")
        except Unauthenticated as exc:
            return _session_invalid(realm, exc)
        except UpstreamError:
            return _page(503, "Temporarily unavailable", "Your permissions cannot be checked right now "
                         "(Cloud Foundry does not answer).", "Try again in a minute.")
        return None

    async def _check_credentials(request: web.Request) -> web.StreamResponse | None:
        given = request.headers.getall("Authorization", ())
        if len(given) > 1:  # as the API: two are refused rather than one picked silently
            return _unauthorized(realm, "More than one Authorization header.", sso=sso is not None)
        header = given[0] if given else None
        if header is None and sso is not None and sso.has_cookie(request):
            return await _check_session(request)
        try:
            tenant = await authenticate(header)
        except Unauthenticated as exc:
            return _unauthorized(realm, str(exc) or "Your credentials were not accepted.", sso=sso is not None)
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
        request[_TENANT] = tenant
        return None

    async def _dispatch(request: web.Request, handler: Handler) -> web.StreamResponse:
        match_info = request.match_info
        # Like the Flask blueprint: no credential check for the slash redirect or for a path
        # that matches no route (a 404/405 says nothing about any tenant).
        name = match_info.route.name or ""
        public = name in (_SLASH_ROUTE, _STYLE_ROUTE) or name.startswith("sso-")
        if match_info.http_exception is None and not public:
            refused = await _check_credentials(request)
            if refused is not None:
                return refused
        return await handler(request)

    @web.middleware
    async def ui_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            resp = await _dispatch(request, handler)
        except web.HTTPException as exc:
            # 404s and redirects carry the same headers as the pages.
            exc.headers.update(_SECURITY_HEADERS)
            raise
        resp.headers.update(_SECURITY_HEADERS)
        return resp

    def _serve(name: str) -> web.Response:
        if name not in assets:
            raise web.HTTPNotFound()
        body, ctype = assets[name]
        # Per-tenant responses behind auth: never cached by shared caches.
        return web.Response(
            body=body,
            headers={"Content-Type": ctype, "Cache-Control": "private, no-cache"},
        )

    async def slash(request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect(request.rel_url.with_path(request.path + "/"))

    async def index(request: web.Request) -> web.StreamResponse:
        return _serve("index.html")

    async def static_file(request: web.Request) -> web.StreamResponse:
        return _serve(request.match_info["name"])

    async def style(request: web.Request) -> web.StreamResponse:
        return _serve("style.css")

    async def session(request: web.Request) -> web.StreamResponse:
        """Who the page is signed in as: the username and the plan's scope, nothing secret."""
        tenant = request[_TENANT]
        scope = getattr(tenant, "scope", None)
        body: dict[str, object] = {
            "username": getattr(tenant, "username", None),
            "scope": str(scope) if scope is not None else None,
        }
        session = request.get(SESSION)
        if session is not None and sso is not None:
            body["sso"] = {
                "user": session.user_name,
                "instance": session.instance,
                "checked_at": session.checked_at,
                "expires_at": session.expires_at,
                "recheck_seconds": sso.settings.recheck_seconds,
            }
        return _json(body, cache_control="private, no-store")

    async def sso_off(request: web.Request) -> web.StreamResponse:
        return sso_pages.not_enabled()

    async def dashboard_list(request: web.Request) -> web.StreamResponse:
        return _json({"dashboards": sorted(dashboards)})

    async def dashboard_file(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in dashboards:
            raise web.HTTPNotFound()
        return web.Response(
            body=dashboards[name],
            content_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    app = web.Application(middlewares=[ui_middleware])
    app.router.add_get("", slash, name=_SLASH_ROUTE)
    app.router.add_get("/", index)
    app.router.add_get("/static/style.css", style, name=_STYLE_ROUTE)
    app.router.add_get("/static/{name}", static_file)
    app.router.add_get("/session", session)
    app.router.add_get("/dashboards/", dashboard_list)
    app.router.add_get("/dashboards/{name}", dashboard_file)
    if sso is not None:
        sso.add_routes(app.router)
    else:
        # A dashboard link from a time SSO was on: say so in a page, not a bare 404.
        app.router.add_get("/instances/{instance}", sso_off, name="sso-off", allow_head=False)
    return app
