"""The broker's WSGI app: openbrokerapi's blueprint, wrapped so that nothing reaches it unchecked.

Order of checks on every OSB request (an app-level before_request runs before any of the
blueprint's): basic auth, constant-time (401) -> X-Broker-API-Version (412) -> route
(404/405) -> originating identity, ids, body size (413), JSON shape, catalog ids,
parameters (400/422). Every error, ours or Flask's or openbrokerapi's, leaves as OSB JSON
``{"description": ...}``; a database outage is a 503, never a 500 or a stack trace.
"""

from __future__ import annotations

import hmac
import io
import logging
import os
import time
import uuid
from typing import Any

from flask import Flask, Request, Response, g, jsonify, request
from openbrokerapi.api import get_blueprint
from openbrokerapi.auth import BrokerAuthenticator
from openbrokerapi.request_filter import check_version, print_request
from prometheus_client import CollectorRegistry
from werkzeug.exceptions import HTTPException

from broker import validation
from broker.config import BrokerSettings, from_env
from broker.metrics import BrokerMetrics
from broker.service import Operation, OsbError, TenantMetricsBroker, to_osb_error
from broker.store import Store, broker_timeouts, request_timeout_from_env
from tenant_metrics.core import jsonlog
from tenant_metrics.core.db import make_engine
from tenant_metrics.core.errors import TenantMetricsError, Unauthenticated, UpstreamError

log = logging.getLogger("broker.app")

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
REQUEST_ID_HEADER = "X-Broker-API-Request-Identity"
_BLUEPRINT = "open_broker"


class ConstantTimeBasicAuth(BrokerAuthenticator):
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

    def authenticate(self) -> Any:
        try:
            self.check()
        except Unauthenticated as exc:
            return _error_response(to_osb_error(exc, None))
        return None


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
    request_timeout = request_timeout_from_env(os.environ)
    store = Store(make_engine(settings.database_url, broker_timeouts(request_timeout), pool_pre_ping=False),
                  request_timeout=request_timeout)
    broker = TenantMetricsBroker(settings, store)
    metrics = BrokerMetrics(registry if registry is not None else CollectorRegistry(),
                            multiproc_dir=os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None)
    auth = ConstantTimeBasicAuth(settings.username, settings.password)

    app = Flask("broker", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["tenant_metrics_broker"] = broker

    blueprint = get_blueprint(broker, broker_credentials=None, logger=log, authenticator=auth)
    # openbrokerapi's print_request logs every header (Authorization included) at DEBUG, and
    # its check_version answers 500 to a version like "abc": ours (below) replaces both.
    blueprint.before_request_funcs[None] = [
        f for f in blueprint.before_request_funcs.get(None, []) if f not in (print_request, check_version)
    ]
    # Its catch-all Exception handler turns every HTTPException (413, 405...) into a 500.
    blueprint.register_error_handler(Exception, _error_response)
    blueprint.register_error_handler(OsbError, _error_response)
    app.register_blueprint(blueprint)
    app.register_error_handler(Exception, _error_response)

    @app.before_request
    def _guard() -> Any:
        req = request._get_current_object()  # type: ignore[attr-defined]  # once, not per proxy access
        g.started = time.perf_counter()
        g.request_id_token = jsonlog.request_id_var.set(
            (req.headers.get(REQUEST_ID_HEADER) or str(uuid.uuid4()))[:128]
        )
        rule = req.url_rule
        g.endpoint = rule.endpoint if rule is not None else "unmatched"
        operation = g.operation = _OPERATIONS.get(g.endpoint)
        if req.path in OPEN_PATHS:
            return None
        try:
            auth.check()
            validation.check_api_version(req.headers.get("X-Broker-API-Version"))
            if operation is not None and req.method != "OPTIONS":
                _check_request(req, operation, broker)
        except TenantMetricsError as exc:
            return _error_response(to_osb_error(exc, operation))
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
            log.info(
                "%s %s %s", req.method, req.path, status,
                extra={"endpoint": endpoint, "status": status, "duration_ms": round(elapsed * 1000, 2)},
            )
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


_OPERATIONS = {f"{_BLUEPRINT}.{op.value}": op for op in Operation}


def _check_request(req: Request, operation: Operation, broker: TenantMetricsBroker) -> None:
    """Refuse anything openbrokerapi would mishandle, before it sees the request."""
    catalog = broker.catalog_
    view = req.view_args or {}
    validation.originating_identity(req.headers.get("X-Broker-API-Originating-Identity"), None)
    if "instance_id" in view:
        validation.check_id("instance_id", view["instance_id"])
    if "binding_id" in view:
        validation.check_id("binding_id", view["binding_id"])
    if operation in (Operation.PROVISION, Operation.UPDATE, Operation.BIND):
        body = validation.parse_body(_read_body(req), req.mimetype)
        if operation is Operation.PROVISION:
            validation.provision_request(view["instance_id"], body, catalog)
        elif operation is Operation.UPDATE:
            validation.update_request(view["instance_id"], body, catalog)
        else:
            validation.bind_request(view["instance_id"], view["binding_id"], body, catalog)
    elif operation in (Operation.DEPROVISION, Operation.UNBIND):
        validation.delete_query(req.args, catalog)
    elif operation is not Operation.CATALOG:
        validation.optional_query(req.args, catalog)


def _read_body(request: Request) -> bytes:
    limit = request.max_content_length or 0
    too_large = validation.PayloadTooLarge(f"the request body must be at most {limit} bytes")
    if request.content_length is not None:
        if request.content_length > limit:
            raise too_large
        return request.get_data(cache=True)
    # Chunked: werkzeug would silently truncate at the limit, so read one byte past it
    # ourselves, then hand the same bytes to openbrokerapi through a fresh stream.
    environ = request.environ
    if "wsgi.input_terminated" not in environ:
        return b""
    body = environ["wsgi.input"].read(limit + 1)
    if len(body) > limit:
        raise too_large
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return request.get_data(cache=True)


def _error_response(exc: Exception) -> tuple[Response, int] | tuple[Response, int, dict[str, str]]:
    """Render any error as OSB JSON; unknown exceptions are logged and become a bare 500."""
    if isinstance(exc, HTTPException):
        code = exc.code or 500
        if code == 413:
            error = OsbError(413, "the request body is too large")
        else:
            error = OsbError(code, exc.description or exc.name)
    else:
        error = to_osb_error(exc, None)
    response = jsonify(error.body())
    if isinstance(exc, HTTPException) and exc.code == 405:
        return response, 405, {k: v for k, v in exc.get_headers() if k == "Allow"}
    if error.status == 401:
        return response, 401, {"WWW-Authenticate": 'Basic realm="tenant-metrics broker"'}
    return response, error.status
