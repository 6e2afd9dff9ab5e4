"""The broker's WSGI app: the ten OSB routes (broker/routes.py) on Flask, plus operations.

Order of checks on every OSB request: basic auth, constant-time (401) -> X-Broker-API-Version
(412) -> route (404/405) -> originating identity (400) -> in the view: body size (413),
JSON shape, ids, catalog ids, parameters (400/422), each exactly once. Every error, ours or
Flask's, leaves through broker/osb.py as OSB JSON ``{"description": ...}``; a database
outage is a 503, never a 500 or a stack trace.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
import uuid
from typing import Any

from flask import Flask, Response, g, jsonify, request
from prometheus_client import CollectorRegistry

from broker import osb, routes, validation
from broker.config import BrokerSettings, from_env
from broker.metrics import BrokerMetrics
from broker.osb import Operation
from broker.service import BrokerService
from broker.store import Store, broker_timeouts
from tenant_metrics.core import jsonlog
from tenant_metrics.core.db import make_engine
from tenant_metrics.core.errors import TenantMetricsError, Unauthenticated, UpstreamError

log = logging.getLogger("broker.app")

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})  # no OSB auth; /metrics has its own
REQUEST_ID_HEADER = "X-Broker-API-Request-Identity"
# The Cloud Foundry router's id of the request (also in its access log): the request id when
# Cloud Controller sent no OSB request identity, and logged beside it when it did.
VCAP_REQUEST_ID_HEADER = "X-Vcap-Request-Id"
MAX_REQUEST_ID = 128


def request_id(osb_id: str | None, vcap_id: str | None) -> str:
    """OSB's X-Broker-API-Request-Identity, else the router's X-Vcap-Request-Id, else new."""
    return (osb_id or vcap_id or str(uuid.uuid4())).strip()[:MAX_REQUEST_ID]


class ConstantTimeBasicAuth:
    """HTTP basic auth against the one broker account, compared in constant time."""

    def __init__(self, username: str, password: str) -> None:
        self._username = username.encode()
        self._password = password.encode()

    def check(self) -> None:
        auth = request.authorization
        given_user = (auth.username or "").encode() if auth and auth.type == "basic" else b""
        given_pass = (auth.password or "").encode() if auth and auth.type == "basic" else b""
        # Both compared every time (no short-circuit), each in constant time.
        ok = hmac.compare_digest(given_user, self._username) & hmac.compare_digest(given_pass, self._password)
        if not ok or auth is None:
            raise Unauthenticated("missing or wrong broker credentials")


def create_app(
    settings: BrokerSettings | None = None,
    *,
    registry: CollectorRegistry | None = None,
    configure_logging: bool = True,
) -> Flask:
    """The app gunicorn serves (``"broker.app:create_app()"``); tests pass settings and a registry."""
    if configure_logging:
        jsonlog.configure(os.environ.get("LOG_LEVEL", "INFO"))
    settings = settings or from_env(os.environ)
    # No pre-ping round trip per checkout: Store reconnects once on a dead connection.
    # Database waits fit inside BROKER_REQUEST_TIMEOUT: a hung database is a 503, not a hang.
    timeouts = broker_timeouts(settings.request_timeout, settings.database.timeouts)
    store = Store(make_engine(settings.database_url, timeouts, pool_pre_ping=False),
                  request_timeout=settings.request_timeout)
    service = BrokerService(settings, store)
    metrics = BrokerMetrics(registry if registry is not None else CollectorRegistry(),
                            multiproc_dir=os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None)
    auth = ConstantTimeBasicAuth(settings.username, settings.password)
    if not settings.metrics.served:
        log.warning("/metrics not served: set METRICS_USERNAME and METRICS_PASSWORD to scrape the broker",
                    extra={"event": "broker_metrics_off"})

    def _metrics_guard(authorization: str | None) -> Response | None:
        """/metrics behind the metrics credential (or 404 when not served), in OSB's format."""
        try:
            settings.metrics.check(authorization)
        except TenantMetricsError as exc:
            response = osb.error_response(exc, None)
            if response.status_code == 401 and settings.metrics.credentials is not None:
                response.headers.setlist("WWW-Authenticate", settings.metrics.credentials.challenges())
            return response
        return None

    app = Flask("broker", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["tenant_metrics_broker"] = service
    routes.register(app, service)

    @app.errorhandler(Exception)
    def _error(exc: Exception) -> Response:
        return osb.error_response(exc, g.get("operation"))

    @app.before_request
    def _guard() -> Any:
        req = request._get_current_object()  # type: ignore[attr-defined]  # once, not per proxy access
        g.started = time.perf_counter()
        g.request_id_token = jsonlog.request_id_var.set(
            request_id(req.headers.get(REQUEST_ID_HEADER), req.headers.get(VCAP_REQUEST_ID_HEADER))
        )
        rule = req.url_rule
        g.endpoint = rule.endpoint if rule is not None else "unmatched"
        operation = g.operation = _OPERATIONS.get(g.endpoint)
        if req.path == "/metrics":
            return _metrics_guard(req.headers.get("Authorization"))
        if req.path in OPEN_PATHS:
            return None
        try:
            auth.check()
            validation.check_api_version(req.headers.get("X-Broker-API-Version"))
            if operation is not None and req.method != "OPTIONS":
                g.caller = validation.originating_identity(
                    req.headers.get("X-Broker-API-Originating-Identity"), jsonlog.request_id_var.get()
                )
        except TenantMetricsError as exc:
            return osb.error_response(exc, operation)
        return None

    @app.after_request
    def _record(response: Response) -> Response:
        req = request._get_current_object()  # type: ignore[attr-defined]
        rid = jsonlog.request_id_var.get()
        if rid:
            response.headers[REQUEST_ID_HEADER] = rid
        operation = g.get("operation")
        endpoint = operation.value if operation is not None else g.get("endpoint", "unmatched")
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        status = response.status_code
        metrics.observe(endpoint, req.method, status, elapsed)
        if req.path not in OPEN_PATHS and log.isEnabledFor(logging.INFO):
            extra: dict[str, Any] = {"endpoint": endpoint, "status": status, "duration_ms": round(elapsed * 1000, 2)}
            vcap_id = req.headers.get(VCAP_REQUEST_ID_HEADER)
            if vcap_id and vcap_id.strip()[:MAX_REQUEST_ID] != rid:
                extra["vcap_request_id"] = vcap_id.strip()[:MAX_REQUEST_ID]
            log.info("%s %s %s", req.method, req.path, status, extra=extra)
        return response

    @app.teardown_request
    def _forget(_exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            jsonlog.request_id_var.reset(token)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        try:
            store.ping()
        except UpstreamError as exc:
            return jsonify(description=str(exc)), 503
        return jsonify(status="ready"), 200

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, content_type=content_type)

    return app


_OPERATIONS = {op.value: op for op in Operation}
