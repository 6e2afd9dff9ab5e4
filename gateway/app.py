"""The gateway's WSGI app: authentication, fair use, the one error mapping, /healthz, /metrics.

Served by gunicorn: ``gunicorn -c gateway/gunicorn_conf.py "gateway.app:create_app()"``.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
import uuid
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from werkzeug.exceptions import HTTPException

from common import db
from common.errors import (
    Forbidden,
    InvalidInput,
    NotFound,
    TenantMetricsError,
    TooManyRequests,
    Unauthenticated,
    UpstreamError,
    UpstreamTimeout,
)
from common.jsonlog import request_id_var
from gateway import config
from gateway.auth import Authenticator
from gateway.metrics import GatewayMetrics
from gateway.params import LimitExceeded
from gateway.proxy import Gateway, api
from gateway.ratelimit import RateLimiter
from gateway.ui import DOCS_BLUEPRINT, create_docs_blueprint, create_ui_blueprint
from gateway.upstream import Upstreams

log = logging.getLogger("gateway")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
PUBLIC_ENDPOINTS = frozenset({"healthz", "metrics"})
REALM = 'Basic realm="tenant-metrics", charset="UTF-8"'

# The one error -> HTTP mapping; the first matching class wins, so subclasses come first.
# errorType values are Prometheus's own vocabulary, so clients and Grafana show them as usual.
ERROR_TABLE: tuple[tuple[type[Exception], int, str], ...] = (
    (LimitExceeded, 422, "execution"),
    (InvalidInput, 400, "bad_data"),
    (Unauthenticated, 401, "unauthorized"),
    (Forbidden, 403, "bad_data"),
    (NotFound, 404, "not_found"),
    (TooManyRequests, 429, "unavailable"),
    (UpstreamTimeout, 503, "timeout"),
    (UpstreamError, 503, "unavailable"),
)


def prometheus_error(status: int, error_type: str, message: str) -> Response:
    body = {"status": "error", "errorType": error_type, "error": message}
    import json

    return Response(json.dumps(body), status=status, mimetype="application/json")


def error_response(exc: Exception) -> Response:
    for cls, status, error_type in ERROR_TABLE:
        if isinstance(exc, cls):
            resp = prometheus_error(status, error_type, str(exc))
            if status == 401:
                resp.headers["WWW-Authenticate"] = REALM
            if isinstance(exc, TooManyRequests) and exc.retry_after is not None:
                resp.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
            return resp
    log.error("unexpected error", exc_info=exc)
    return prometheus_error(500, "internal", "internal error (see the gateway's logs)")


def create_app(
    settings: config.GatewaySettings | None = None,
    registry: CollectorRegistry | None = None,
) -> Flask:
    settings = settings or config.from_env(os.environ)
    registry = registry or CollectorRegistry()
    metrics = GatewayMetrics.create(registry)
    engine = db.make_engine(settings.database_url)
    authenticator = Authenticator(db.make_session_factory(engine), ttl=settings.auth_cache_seconds)
    limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
    upstreams = Upstreams(
        settings.prometheus_urls,
        metrics,
        connect_timeout=settings.connect_timeout_seconds,
        read_timeout=settings.query_timeout_seconds + 5.0,
        health_interval=settings.health_check_seconds,
    )

    app = Flask("gateway", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    # "//api/v1/query" must not be redirected or merged into a route: a 404 is clearer.
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = True
    app.extensions["tenant_gateway"] = Gateway(settings, upstreams, metrics)
    app.extensions["tenant_gateway_engine"] = engine
    app.register_blueprint(api)
    # The tenant page (gateway/ui) checks credentials itself, with the same realm.
    app.register_blueprint(create_ui_blueprint(authenticator.authenticate, realm="tenant-metrics"))
    # The tenant guide is public: it is the catalog's documentation URL, read before any credential exists.
    app.register_blueprint(create_docs_blueprint())

    @app.route("/healthz", methods=["GET"], endpoint="healthz")
    def healthz() -> Response:
        return Response('{"status":"ok"}', mimetype="application/json")

    @app.route("/metrics", methods=["GET"], endpoint="metrics")
    def metrics_endpoint() -> Response:
        source: Any = registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            source = CollectorRegistry()
            multiprocess.MultiProcessCollector(source)  # type: ignore[no-untyped-call]
        return Response(generate_latest(source), mimetype=CONTENT_TYPE_LATEST)

    @app.before_request
    def authenticate() -> None:
        g.started = time.perf_counter()
        g.tenant = None
        given = request.headers.get("X-Request-Id", "")
        # A client's id is kept only if it is plainly an id (it ends up in every log line).
        request_id_var.set(given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex)
        if request.endpoint in PUBLIC_ENDPOINTS or (request.blueprint or "") in ("tenant_ui", DOCS_BLUEPRINT):
            return
        try:
            g.tenant = authenticator.authenticate(request.headers.get("Authorization"))
        except Unauthenticated:
            metrics.auth_failures.inc()
            raise
        try:
            limiter.take(g.tenant.binding_id)
        except TooManyRequests:
            metrics.rate_limited.labels(g.tenant.scope.value).inc()
            raise

    @app.after_request
    def account(resp: Response) -> Response:
        endpoint = request.endpoint or "unknown"
        tenant = g.get("tenant")
        scope = tenant.scope.value if tenant is not None else "none"
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        metrics.requests.labels(endpoint, str(resp.status_code), scope).inc()
        metrics.request_seconds.labels(endpoint).observe(elapsed)
        if endpoint not in PUBLIC_ENDPOINTS:
            log.info(
                "request",
                extra={
                    "request_id": request_id_var.get(),
                    "method": request.method,
                    "endpoint": endpoint,
                    "status": resp.status_code,
                    "scope": scope,
                    "username": tenant.username if tenant is not None else None,
                    "upstream": g.get("upstream_index"),
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
        return resp

    @app.errorhandler(TenantMetricsError)
    def on_domain_error(exc: TenantMetricsError) -> Response:
        return error_response(exc)

    @app.errorhandler(HTTPException)
    def on_http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        error_type = {404: "not_found", 405: "bad_data", 413: "bad_data"}.get(status, "bad_data")
        message = {404: "not found", 405: "method not allowed", 413: "request body too large"}.get(
            status, exc.name
        )
        return prometheus_error(status, error_type, message)

    @app.errorhandler(Exception)
    def on_unexpected(exc: Exception) -> Response:
        return error_response(exc)

    return app
