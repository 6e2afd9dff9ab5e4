"""The gateway's aiohttp app: authentication, fair use, the one error mapping, /healthz, /metrics.

Served by gunicorn with aiohttp's uvloop worker (``tenant-metrics gateway``): each worker
process runs one event loop, so a request costs no thread hand-offs, and the upstream
call is a non-blocking keep-alive request (docs/gateway.md, "Where the time goes").
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import time
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy.engine import Engine

from gateway import config
from gateway.auth import Authenticator, InstanceDirectory, Tenant
from gateway.clientaddr import client_address
from gateway.gatekeeper import Gatekeeper
from gateway.lookups import LookupRunner
from gateway.metrics import GatewayMetrics
from gateway.params import LimitExceeded
from gateway.proxy import CUT_SHORT, TENANT, UPSTREAM_INDEX, PrometheusApi
from gateway.ratelimit import FailureBudget, RateLimiter
from gateway.sso.cfclient import CloudFoundryAuth
from gateway.sso.dashboard import DashboardSso, SessionEnded
from gateway.ui import DOCS_ROUTE, UI_PREFIX, add_docs_routes, create_ui_app
from gateway.upstream import Upstreams
from tenant_metrics.core import db
from tenant_metrics.core.errors import (
    Forbidden,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    TooManyRequests,
    Unauthenticated,
    UpstreamError,
    UpstreamTimeout,
)
from tenant_metrics.core.jsonlog import request_id_var

log = logging.getLogger("gateway")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
PUBLIC_ENDPOINTS = frozenset({"healthz", "readyz", "metrics", DOCS_ROUTE})
REALM = 'Basic realm="tenant-metrics", charset="UTF-8"'
SESSION_REALM = 'Bearer realm="tenant-metrics"'
MAX_BODY = 1024 * 1024

# The one error -> HTTP mapping; the first matching class wins, so subclasses come first.
# errorType values are Prometheus's own vocabulary, so clients and Grafana show them as usual.
ERROR_TABLE: tuple[tuple[type[Exception], int, str], ...] = (
    (LimitExceeded, 422, "execution"),
    (InvalidInput, 400, "bad_data"),
    (Unauthenticated, 401, "unauthorized"),
    (Forbidden, 403, "bad_data"),
    (NotFound, 404, "not_found"),
    (MethodNotAllowed, 405, "bad_data"),
    (TooManyRequests, 429, "unavailable"),
    (UpstreamTimeout, 503, "timeout"),
    (UpstreamError, 503, "unavailable"),
)
# aiohttp's own refusals (no route, wrong method, body too large), in the same format.
_HTTP_MESSAGES = {404: "not found", 405: "method not allowed", 413: "request body too large"}

GATEWAY_KEY = web.AppKey("tenant_gateway", PrometheusApi)


def prometheus_error(status: int, error_type: str, message: str) -> web.Response:
    body = {"status": "error", "errorType": error_type, "error": message}
    return web.Response(body=json.dumps(body).encode(), status=status, content_type="application/json")


def error_response(exc: BaseException) -> web.Response:
    if isinstance(exc, web.HTTPException):
        status = exc.status
        return prometheus_error(status, "not_found" if status == 404 else "bad_data",
                                _HTTP_MESSAGES.get(status, exc.reason))
    for cls, status, error_type in ERROR_TABLE:
        if isinstance(exc, cls):
            resp = prometheus_error(status, error_type, str(exc))
            if status == 401:
                # A dashboard session gets no Basic challenge: a browser would prompt for a
                # password over the tenant page, which offers to sign in again instead.
                resp.headers["WWW-Authenticate"] = SESSION_REALM if isinstance(exc, SessionEnded) else REALM
            if isinstance(exc, TooManyRequests) and exc.retry_after is not None:
                resp.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
            return resp
    log.error("unexpected error", exc_info=exc)
    return prometheus_error(500, "internal", "internal error (see the gateway's logs)")


def _authorization(request: web.Request) -> str | None:
    """The one Authorization header; two are refused rather than one picked silently."""
    found = request.headers.getall("Authorization", ())
    if len(found) > 1:
        raise Unauthenticated("more than one Authorization header")
    return found[0] if found else None


def credential_store_engine(settings: config.GatewaySettings) -> Engine:
    """The engine for credential lookups: the DB_* timeouts, each fitted inside the lookup
    bound, so a hung database costs a lookup seconds rather than minutes."""
    bound = settings.auth_lookup_timeout_seconds
    t = settings.database.timeouts
    fitted = dataclasses.replace(
        t,
        connect_timeout=min(t.connect_timeout, bound),
        statement_timeout=min(t.statement_timeout, bound),
        lock_timeout=min(t.lock_timeout, bound),
        pool_timeout=min(t.pool_timeout, bound),
    )
    # No ping before each checkout: it is a transaction of its own, doubling what a
    # lookup costs. A connection that died meanwhile fails one lookup, which is tried
    # again once on a fresh connection (gateway/auth.py); the pool is then renewed.
    return db.make_engine(settings.database.url, fitted, pool_pre_ping=False)


def create_app(
    settings: config.GatewaySettings | None = None,
    registry: CollectorRegistry | None = None,
) -> web.Application:
    settings = settings or config.from_env(os.environ)
    registry = registry or CollectorRegistry()
    metrics = GatewayMetrics.create(registry)
    engine = credential_store_engine(settings)
    authenticator = Authenticator(db.make_session_factory(engine), ttl=settings.auth_cache_seconds,
                                  stale_if_error=settings.auth_stale_if_error_seconds)
    budget = FailureBudget(
        RateLimiter(settings.auth_failures_per_second, settings.auth_failure_burst),
        RateLimiter(settings.auth_user_failures_per_second, settings.auth_user_failure_burst),
    )
    gatekeeper = Gatekeeper(
        authenticator, RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst), metrics,
        budget=budget,
        runner=LookupRunner(settings.auth_max_lookups, settings.auth_lookup_timeout_seconds),
    )
    upstreams = Upstreams(
        settings.prometheus_urls,
        metrics,
        connect_timeout=settings.connect_timeout_seconds,
        read_timeout=settings.query_timeout_seconds + 5.0,
        health_interval=settings.health_check_seconds,
        ttfb_timeout=settings.upstream_ttfb_timeout_seconds,
        probe_timeout=settings.upstream_probe_timeout_seconds,
    )
    trusted = settings.trusted_proxies
    api = PrometheusApi(settings, upstreams, metrics)
    sso: DashboardSso | None = None
    sso_auth: CloudFoundryAuth | None = None
    if settings.sso is not None:
        sso_auth = CloudFoundryAuth(settings.sso)
        directory = InstanceDirectory(db.make_session_factory(engine))

        async def find_instance(instance_id: str) -> Any:
            return await gatekeeper.runner.run(directory.find, instance_id)

        sso = DashboardSso(settings.sso, sso_auth, find_instance, metrics)
    # The tenant page checks credentials itself (same realm), so the browser reuses them.
    ui_app = create_ui_app(gatekeeper.authenticate, realm="tenant-metrics", sso=sso)
    info = logging.INFO

    @web.middleware
    async def gateway_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        started = time.perf_counter()
        # The router's id first (X-Vcap-Request-Id: one id from gorouter to our log lines),
        # then the client's; either is kept only if it is plainly an id (it is in every log line).
        given = next((value for value in (request.headers.get("X-Vcap-Request-Id", ""),
                                          request.headers.get("X-Request-Id", ""))
                      if value and _REQUEST_ID.fullmatch(value)), None)
        request_id_var.set(given or os.urandom(16).hex())
        match = request.match_info
        endpoint = match.route.name or ("ui" if ui_app in match.apps else "unknown")
        tenant: Tenant | None = None
        resp: web.StreamResponse
        try:
            if endpoint not in PUBLIC_ENDPOINTS and ui_app not in match.apps:
                header = _authorization(request)
                if header is None and sso is not None and sso.has_cookie(request):
                    # The tenant page signed in with Cloud Foundry (gateway/sso/dashboard.py).
                    tenant = await sso.admit(request)
                    gatekeeper.throttle(tenant)
                else:
                    client = client_address(request.remote, request.headers.getall("X-Forwarded-For", ()), trusted)
                    tenant = await gatekeeper.admit(header, client)
                request[TENANT] = tenant
            resp = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:  # the page's slash redirect
                raise
            resp = error_response(exc)
        except Exception as exc:  # the one place errors become HTTP answers
            resp = error_response(exc)
        elapsed = time.perf_counter() - started
        scope = tenant.scope.value if tenant is not None else "none"
        # 499: the answer was cut short after its status was sent (see proxy._relay).
        status = 499 if request.get(CUT_SHORT) else resp.status
        metrics.requests.labels(endpoint, str(status), scope).inc()
        metrics.request_seconds.labels(endpoint).observe(elapsed)
        if endpoint not in PUBLIC_ENDPOINTS and log.isEnabledFor(info):
            log.info(
                "request",
                extra={
                    "request_id": request_id_var.get(),
                    "method": request.method,
                    "endpoint": endpoint,
                    "status": status,
                    "scope": scope,
                    "username": tenant.username if tenant is not None else None,
                    "upstream": request.get(UPSTREAM_INDEX),
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
        return resp

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type="application/json")

    async def readyz(request: web.Request) -> web.Response:
        """Ready when a Prometheus answers (any instance, within the probe timeout). The
        database is reported, not required: it is shared by every instance, so failing
        readiness on it would take them all out of the route at once, while stale-if-error
        keeps verified tenants served (docs/gateway.md, Failure modes)."""
        answering = [index for index in range(len(settings.prometheus_urls)) if await upstreams.probe(index)]
        body = {
            "status": "ready" if answering else "unavailable",
            "prometheus_answering": len(answering),
            "prometheus_total": len(settings.prometheus_urls),
            "credentials": "stale" if gatekeeper.serving_stale else "live",
        }
        return web.json_response(body, status=200 if answering else 503)

    async def metrics_endpoint(request: web.Request) -> web.Response:
        settings.metrics.check(request.headers.get("Authorization"))
        source: Any = registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            source = CollectorRegistry()
            multiprocess.MultiProcessCollector(source)  # type: ignore[no-untyped-call]
        resp = web.Response(body=generate_latest(source))
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    async def on_startup(app: web.Application) -> None:
        await upstreams.start()
        if sso_auth is not None:
            await sso_auth.start()

    async def on_cleanup(app: web.Application) -> None:
        await upstreams.close()
        if sso_auth is not None:
            await sso_auth.close()
        engine.dispose()

    app = web.Application(middlewares=[gateway_middleware], client_max_size=MAX_BODY)
    app[GATEWAY_KEY] = api
    app.router.add_get("/healthz", healthz, name="healthz", allow_head=False)
    app.router.add_get("/readyz", readyz, name="readyz", allow_head=False)
    app.router.add_get("/metrics", metrics_endpoint, name="metrics", allow_head=False)
    add_docs_routes(app.router)
    app.add_subapp(UI_PREFIX, ui_app)
    api.add_routes(app.router)
    if sso is not None:
        app.on_response_prepare.append(sso.on_response_prepare)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app
