"""The one place our errors become OSB answers: ``{"description": ...}`` with the right status.

Every failure of an OSB request, whoever raised it (the auth check, broker/validation.py,
the service, the store, werkzeug's routing and body limits, a bug), leaves through
``error_response``; nothing else writes an error body.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from http import HTTPStatus

from flask import Response, jsonify
from werkzeug.exceptions import HTTPException

from broker.errors import NotSupported, PayloadTooLarge, PreconditionFailed, Unprocessable
from tenant_metrics.core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    TenantMetricsError,
    Unauthenticated,
    UpstreamError,
)

log = logging.getLogger(__name__)

WWW_AUTHENTICATE = 'Basic realm="tenant-metrics broker"'


class Operation(StrEnum):
    """The ten OSB endpoints (also the ``endpoint`` label of metrics and access logs)."""

    CATALOG = "catalog"
    PROVISION = "provision"
    UPDATE = "update"
    DEPROVISION = "deprovision"
    GET_INSTANCE = "get_instance"
    LAST_OPERATION = "last_operation"
    BIND = "bind"
    UNBIND = "unbind"
    GET_BINDING = "get_binding"
    LAST_BINDING_OPERATION = "last_binding_operation"


# OSB 2.17: a missing resource is 404, except on DELETE, where 410 Gone tells the platform
# it is already deleted. last_operation answers 410 only for a finished asynchronous
# delete; ours are synchronous, so an unknown instance or binding there is a plain 404.
_GONE_ON_MISSING = frozenset({Operation.DEPROVISION, Operation.UNBIND})


@dataclass(frozen=True, slots=True)
class OsbError:
    """An OSB error answer: HTTP status, optional OSB ``error`` code, ``description``."""

    status: int
    description: str
    error: str | None = None

    def body(self) -> dict[str, str]:
        body = {"description": self.description}
        if self.error:
            body["error"] = self.error
        return body


def to_osb_error(exc: BaseException, operation: Operation | None) -> OsbError:
    """The one mapping from our errors (and werkzeug's) to OSB statuses."""
    if isinstance(exc, HTTPException):
        if exc.code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
            return OsbError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "the request body is too large")
        return OsbError(exc.code or HTTPStatus.INTERNAL_SERVER_ERROR, exc.description or exc.name)
    if isinstance(exc, PreconditionFailed):
        return OsbError(HTTPStatus.PRECONDITION_FAILED, str(exc))
    if isinstance(exc, PayloadTooLarge):
        return OsbError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(exc))
    if isinstance(exc, Unprocessable):
        return OsbError(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc), exc.error)
    if isinstance(exc, InvalidInput):
        return OsbError(HTTPStatus.BAD_REQUEST, str(exc))
    if isinstance(exc, Unauthenticated):
        return OsbError(HTTPStatus.UNAUTHORIZED, str(exc))
    if isinstance(exc, Conflict):
        return OsbError(HTTPStatus.CONFLICT, str(exc))
    if isinstance(exc, NotFound):
        status = HTTPStatus.GONE if operation in _GONE_ON_MISSING else HTTPStatus.NOT_FOUND
        return OsbError(status, str(exc))
    if isinstance(exc, NotSupported):
        return OsbError(HTTPStatus.NOT_IMPLEMENTED, str(exc))
    if isinstance(exc, UpstreamError):
        return OsbError(HTTPStatus.SERVICE_UNAVAILABLE, f"{exc}; please retry later")
    if isinstance(exc, TenantMetricsError):
        return OsbError(HTTPStatus.BAD_REQUEST, str(exc))
    log.error("unexpected error in %s", operation, exc_info=exc)
    return OsbError(HTTPStatus.INTERNAL_SERVER_ERROR, "internal broker error; it has been logged")


def error_response(exc: BaseException, operation: Operation | None) -> Response:
    """Write ``exc`` as OSB JSON, with ``Allow`` on 405 and ``WWW-Authenticate`` on 401."""
    error = to_osb_error(exc, operation)
    response = jsonify(error.body())
    response.status_code = error.status
    if isinstance(exc, HTTPException) and exc.code == HTTPStatus.METHOD_NOT_ALLOWED:
        response.headers.update({k: v for k, v in exc.get_headers() if k == "Allow"})
    if error.status == HTTPStatus.UNAUTHORIZED:
        response.headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    return response
