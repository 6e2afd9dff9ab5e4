"""The three layers apart: validation builds typed requests, the service takes them without
HTTP, and broker/osb.py alone decides the OSB status of each error."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from http import HTTPStatus

import pytest

from broker.catalog import Catalog
from broker.config import BrokerSettings, CatalogSettings
from broker.domain import (
    BindingQuery,
    BindRequest,
    Caller,
    DeprovisionRequest,
    InstanceQuery,
    ProvisionRequest,
    UnbindRequest,
)
from broker.errors import NotSupported, PayloadTooLarge, PreconditionFailed, Unprocessable
from broker.osb import Operation, to_osb_error
from broker.service import BrokerService
from broker.store import Store
from broker.validation import (
    bind_request,
    binding_query,
    deprovision_request,
    instance_query,
    provision_request,
    unbind_request,
    update_request,
)
from tenant_metrics.core.db import make_engine
from tenant_metrics.core.errors import Conflict, InvalidInput, NotFound, UpstreamError
from tenant_metrics.core.labels import Scope

CATALOG = Catalog.from_settings(CatalogSettings())
SID = CATALOG.service_id
SPACE = CATALOG.plan_id_of(Scope.SPACE)
ORG = CATALOG.plan_id_of(Scope.ORG)


def test_validation_returns_frozen_typed_requests() -> None:
    body = {"service_id": SID, "plan_id": ORG, "context": {"organization_guid": "o", "space_guid": "s",
                                                           "instance_name": "n"}}
    req = provision_request("i-1", body, CATALOG)
    assert req == ProvisionRequest("i-1", SID, ORG, Scope.ORG, "o", "s", instance_name="n")
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.plan_id = SPACE  # type: ignore[misc]
    args = {"service_id": SID, "plan_id": SPACE}
    assert deprovision_request("i-1", args, CATALOG) == DeprovisionRequest("i-1", SID, SPACE)
    assert unbind_request("i-1", "b-1", args, CATALOG) == UnbindRequest("i-1", "b-1", SID, SPACE)
    assert instance_query("i-1", {}, CATALOG) == InstanceQuery("i-1")
    assert binding_query("i-1", "b-1", args, CATALOG) == BindingQuery("i-1", "b-1", SID, SPACE)
    bind = bind_request("i-1", "b-1", {"service_id": SID, "plan_id": SPACE, "bind_resource": {"app_guid": "a"}},
                        CATALOG)
    assert bind == BindRequest("i-1", "b-1", SID, SPACE, app_guid="a")


def test_maintenance_info_without_version_is_absent_and_with_one_is_refused() -> None:
    base = {"service_id": SID, "plan_id": SPACE, "context": {"organization_guid": "o", "space_guid": "s"}}
    for absent in ({}, {"description": "no version"}, {"version": None}, None):
        assert provision_request("i-1", {**base, "maintenance_info": absent}, CATALOG).plan_id == SPACE
        assert update_request("i-1", {"service_id": SID, "maintenance_info": absent}, CATALOG).plan_id is None
    with pytest.raises(Unprocessable) as refused:
        provision_request("i-1", {**base, "maintenance_info": {"version": "1.0.0"}}, CATALOG)
    assert refused.value.error == "MaintenanceInfoConflict"
    with pytest.raises(InvalidInput, match="maintenance_info must be a JSON object"):
        bind_request("i-1", "b-1", {"service_id": SID, "plan_id": SPACE, "maintenance_info": []}, CATALOG)


@pytest.mark.parametrize(("error", "operation", "status"), [
    (NotFound("x"), Operation.GET_INSTANCE, HTTPStatus.NOT_FOUND),
    (NotFound("x"), Operation.UPDATE, HTTPStatus.NOT_FOUND),
    (NotFound("x"), Operation.BIND, HTTPStatus.NOT_FOUND),
    (NotFound("x"), Operation.LAST_OPERATION, HTTPStatus.NOT_FOUND),
    (NotFound("x"), Operation.LAST_BINDING_OPERATION, HTTPStatus.NOT_FOUND),
    (NotFound("x"), Operation.DEPROVISION, HTTPStatus.GONE),
    (NotFound("x"), Operation.UNBIND, HTTPStatus.GONE),
    (Conflict("x"), Operation.PROVISION, HTTPStatus.CONFLICT),
    (InvalidInput("x"), Operation.PROVISION, HTTPStatus.BAD_REQUEST),
    (Unprocessable("MaintenanceInfoConflict", "x"), Operation.PROVISION, HTTPStatus.UNPROCESSABLE_ENTITY),
    (PreconditionFailed("x"), None, HTTPStatus.PRECONDITION_FAILED),
    (PayloadTooLarge("x"), Operation.BIND, HTTPStatus.REQUEST_ENTITY_TOO_LARGE),
    (NotSupported("x"), Operation.GET_BINDING, HTTPStatus.NOT_IMPLEMENTED),
    (UpstreamError("database unavailable"), Operation.PROVISION, HTTPStatus.SERVICE_UNAVAILABLE),
    (RuntimeError("a bug"), Operation.PROVISION, HTTPStatus.INTERNAL_SERVER_ERROR),
])
def test_one_mapping_from_errors_to_osb(error: Exception, operation: Operation | None, status: int) -> None:
    osb_error = to_osb_error(error, operation)
    assert osb_error.status == status
    assert "a bug" not in osb_error.description  # an unexpected error's text never reaches the client


@pytest.fixture
def service(settings: BrokerSettings) -> Iterator[BrokerService]:
    svc = BrokerService(settings, Store(make_engine(settings.database_url)))
    yield svc
    svc.store.engine.dispose()


def test_the_service_takes_typed_requests_without_http(service: BrokerService) -> None:
    caller = Caller(platform="test", user_id="u", request_id="r")
    req = ProvisionRequest("i-1", SID, SPACE, Scope.SPACE, "o", "s")
    assert service.provision(req, caller) is True
    assert service.provision(req, caller) is False
    service.last_operation(InstanceQuery("i-1"))
    with pytest.raises(NotFound):
        service.last_operation(InstanceQuery("nope"))
    bound = service.bind(BindRequest("i-1", "b-1", SID, SPACE, app_guid="a"), caller)
    assert bound.created and bound.credentials["service_instance_guid"] == "i-1"
    with pytest.raises(NotSupported):
        service.get_binding(BindingQuery("i-1", "b-1"))
    with pytest.raises(NotFound):
        service.last_binding_operation(BindingQuery("other-instance", "b-1"))
    service.unbind(UnbindRequest("i-1", "b-1", SID, SPACE), caller)
    with pytest.raises(NotFound):
        service.last_binding_operation(BindingQuery("i-1", "b-1"))
    service.deprovision(DeprovisionRequest("i-1", SID, SPACE), caller)
    with pytest.raises(NotFound):
        service.get_instance(InstanceQuery("i-1"))
