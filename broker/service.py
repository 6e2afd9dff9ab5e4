"""TenantMetricsBroker: the OSB operations (openbrokerapi's ServiceBroker) over the Store.

This module is the one place where our errors (tenant_metrics.core.errors) become OSB responses: every
operation runs inside ``_osb(operation)``, which turns them into ``OsbError`` (status, OSB
error code, description), rendered by broker/app.py. openbrokerapi's own handlers catch
only a few of its exceptions and answer 500 for the rest, so OsbError deliberately is none
of those: it always reaches our renderer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from http import HTTPStatus
from typing import Any

from openbrokerapi.errors import ServiceException
from openbrokerapi.service_broker import (
    BindDetails,
    Binding,
    BindState,
    DeprovisionDetails,
    DeprovisionServiceSpec,
    GetBindingSpec,
    GetInstanceDetailsSpec,
    LastOperation,
    OperationState,
    ProvisionDetails,
    ProvisionedServiceSpec,
    ProvisionState,
    Service,
    ServiceBroker,
    UnbindDetails,
    UnbindSpec,
    UpdateDetails,
    UpdateServiceSpec,
)
from sqlalchemy.exc import SQLAlchemyError

from broker import validation
from broker.catalog import Catalog
from broker.config import BrokerSettings
from broker.domain import Caller, binding_credentials
from broker.store import Store
from tenant_metrics.core import credentials
from tenant_metrics.core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    TenantMetricsError,
    Unauthenticated,
    UpstreamError,
)
from tenant_metrics.core.jsonlog import request_id_var

log = logging.getLogger(__name__)


class Operation(StrEnum):
    """The OSB endpoints; named like openbrokerapi's view functions."""

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


# OSB: a missing resource is 404 on GET/PUT/PATCH but 410 Gone on DELETE and polling.
_GONE_ON_MISSING = {
    Operation.DEPROVISION,
    Operation.UNBIND,
    Operation.LAST_OPERATION,
    Operation.LAST_BINDING_OPERATION,
}


class OsbError(ServiceException):
    """An OSB error response: HTTP status, optional OSB ``error`` code, ``description``."""

    def __init__(self, status: int, description: str, error: str | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.error = error

    def body(self) -> dict[str, str]:
        body = {"description": self.description}
        if self.error:
            body["error"] = self.error
        return body


def to_osb_error(exc: Exception, operation: Operation | None) -> OsbError:
    """The one mapping from our errors to OSB statuses."""
    if isinstance(exc, OsbError):
        return exc
    if isinstance(exc, validation.PreconditionFailed):
        return OsbError(HTTPStatus.PRECONDITION_FAILED, str(exc))
    if isinstance(exc, validation.PayloadTooLarge):
        return OsbError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(exc))
    if isinstance(exc, validation.Unprocessable):
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
    if isinstance(exc, UpstreamError):
        return OsbError(HTTPStatus.SERVICE_UNAVAILABLE, f"{exc}; please retry later")
    if isinstance(exc, SQLAlchemyError):  # a database error that escaped the Store: no internals
        log.warning("database error in %s: %s", operation, type(exc).__name__)
        return OsbError(HTTPStatus.SERVICE_UNAVAILABLE, "database unavailable; please retry later")
    if isinstance(exc, TenantMetricsError):
        return OsbError(HTTPStatus.BAD_REQUEST, str(exc))
    log.error("unexpected error in %s", operation, exc_info=exc)
    return OsbError(HTTPStatus.INTERNAL_SERVER_ERROR, "internal broker error; it has been logged")


@contextmanager
def _osb(operation: Operation) -> Iterator[None]:
    try:
        yield
    except OsbError:
        raise
    except Exception as exc:
        raise to_osb_error(exc, operation) from exc


def _caller(details: Any) -> Caller:
    identity = getattr(details, "originating_identity", None) or {}
    value = identity.get("value") if isinstance(identity, dict) else None
    user_id = value.get("user_id") if isinstance(value, dict) else None
    return Caller(
        platform=identity.get("platform") if isinstance(identity, dict) else None,
        user_id=str(user_id) if user_id is not None else None,
        request_id=request_id_var.get(),
    )


class TenantMetricsBroker(ServiceBroker):
    def __init__(self, settings: BrokerSettings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.catalog_ = Catalog.from_settings(settings.catalog)
        self._service = self.catalog_.to_osb()

    def catalog(self) -> Service:
        return self._service

    # -- instances ---------------------------------------------------------------------

    def provision(self, instance_id: str, details: ProvisionDetails, async_allowed: bool, **_: Any) -> ProvisionedServiceSpec:
        with _osb(Operation.PROVISION):
            req = validation.provision_request(instance_id, {
                "service_id": details.service_id,
                "plan_id": details.plan_id,
                "organization_guid": details.organization_guid,
                "space_guid": details.space_guid,
                "context": details.context,
                "parameters": details.parameters,
            }, self.catalog_)
            outcome = self.store.provision(req, _caller(details))
            state = ProvisionState.SUCCESSFUL_CREATED if outcome.created else ProvisionState.IDENTICAL_ALREADY_EXISTS
            return ProvisionedServiceSpec(state=state, dashboard_url=self.settings.dashboard_url)

    def update(self, instance_id: str, details: UpdateDetails, async_allowed: bool, **_: Any) -> UpdateServiceSpec:
        with _osb(Operation.UPDATE):
            req = validation.update_request(instance_id, {
                "service_id": details.service_id,
                "plan_id": details.plan_id,
                "context": details.context,
                "parameters": details.parameters,
            }, self.catalog_)
            self.store.update(req, _caller(details))
            return UpdateServiceSpec(is_async=False, dashboard_url=self.settings.dashboard_url)

    def deprovision(self, instance_id: str, details: DeprovisionDetails, async_allowed: bool, **_: Any) -> DeprovisionServiceSpec:
        with _osb(Operation.DEPROVISION):
            self.store.deprovision(validation.check_id("instance_id", instance_id), _caller(details))
            return DeprovisionServiceSpec(is_async=False)

    def get_instance(self, instance_id: str, **_: Any) -> GetInstanceDetailsSpec:
        with _osb(Operation.GET_INSTANCE):
            record = self.store.get_instance(validation.check_id("instance_id", instance_id))
            return GetInstanceDetailsSpec(
                service_id=record.service_id,
                plan_id=record.plan_id,
                dashboard_url=self.settings.dashboard_url,
                parameters={},
            )

    def last_operation(self, instance_id: str, operation_data: str | None, service_id: str | None = None,
                       plan_id: str | None = None, **_: Any) -> LastOperation:
        # Every operation is synchronous: an instance that exists has succeeded.
        with _osb(Operation.LAST_OPERATION):
            self.store.get_instance(validation.check_id("instance_id", instance_id))
            return LastOperation(OperationState.SUCCEEDED, "the service instance is ready")

    # -- bindings ----------------------------------------------------------------------

    def bind(self, instance_id: str, binding_id: str, details: BindDetails, async_allowed: bool, **_: Any) -> Binding:
        with _osb(Operation.BIND):
            resource = details.bind_resource
            req = validation.bind_request(instance_id, binding_id, {
                "service_id": details.service_id,
                "plan_id": details.plan_id,
                "app_guid": details.app_guid,
                "bind_resource": {"app_guid": resource.app_guid} if resource is not None else None,
                "context": details.context,
                "parameters": details.parameters,
            }, self.catalog_)
            key = self.settings.credentials_key
            caller = _caller(details)
            outcome = self.store.bind(req, caller, key)
            binding = outcome.binding
            assert binding is not None
            # The password is derived again from the stored nonce: a repeat gets the same one,
            # unless CREDENTIALS_KEY changed since; then the (never delivered) secret is replaced.
            issued = credentials.issue(key, binding.username, binding.secret_nonce)
            if not credentials.verify(issued.password, binding.password_sha256):
                binding = self.store.rekey(binding, caller, key)
                issued = credentials.issue(key, binding.username, binding.secret_nonce)
            state = BindState.SUCCESSFUL_BOUND if outcome.created else BindState.IDENTICAL_ALREADY_EXISTS
            return Binding(
                state=state,
                credentials=binding_credentials(self.settings.gateway_public_url, outcome.instance, issued),
            )

    def unbind(self, instance_id: str, binding_id: str, details: UnbindDetails, async_allowed: bool, **_: Any) -> UnbindSpec:
        with _osb(Operation.UNBIND):
            self.store.unbind(
                validation.check_id("instance_id", instance_id),
                validation.check_id("binding_id", binding_id),
                _caller(details),
            )
            return UnbindSpec(is_async=False)

    def get_binding(self, instance_id: str, binding_id: str, **_: Any) -> GetBindingSpec:
        # bindings_retrievable is false (docs/broker.md): credentials leave the broker only
        # in the answer to a bind. Say so plainly rather than hand them out again.
        with _osb(Operation.GET_BINDING):
            record = self.store.find_binding(validation.check_id("binding_id", binding_id))
            if record.instance_id != instance_id:
                raise NotFound(f"binding {binding_id} does not exist")
            raise OsbError(
                HTTPStatus.NOT_IMPLEMENTED,
                "bindings are not retrievable from this broker (bindings_retrievable: false); "
                "credentials are returned by the bind request",
            )

    def last_binding_operation(self, instance_id: str, binding_id: str, operation_data: str | None,
                               service_id: str | None = None, plan_id: str | None = None, **_: Any) -> LastOperation:
        with _osb(Operation.LAST_BINDING_OPERATION):
            record = self.store.find_binding(validation.check_id("binding_id", binding_id))
            if record.instance_id != instance_id:
                raise NotFound(f"binding {binding_id} does not exist")
            return LastOperation(OperationState.SUCCEEDED, "the binding is ready")
