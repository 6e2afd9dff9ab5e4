"""OSB request checks (pure): headers, bodies and query strings turned into typed requests.

This is the only place an OSB request is validated: each function here takes the raw
pieces of one request (path ids, parsed JSON body or query string) and returns the frozen
request type of broker/domain.py, or raises an InvalidInput naming the field. What reaches
broker/service.py is well-formed and is not checked again.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from broker.catalog import Catalog
from broker.domain import (
    BindingQuery,
    BindRequest,
    Caller,
    DeprovisionRequest,
    InstanceQuery,
    ProvisionRequest,
    UnbindRequest,
    UpdateRequest,
)
from broker.errors import PreconditionFailed, Unprocessable
from tenant_metrics.core.errors import InvalidInput
from tenant_metrics.core.labels import Scope
from tenant_metrics.core.models import ID_LENGTH, NAME_LENGTH

MIN_API_VERSION = (2, 13)
# PostgreSQL text cannot hold NUL, and no id or name needs a control character: refusing
# them here keeps such input a 400 instead of a database error (503).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_VERSION = re.compile(r"^\s*(\d{1,4})\.(\d{1,4})\s*$")


def check_api_version(value: str | None) -> None:
    if not value:
        raise PreconditionFailed("the X-Broker-API-Version header is required (2.13 or later)")
    match = _VERSION.match(value)
    if match is None:
        raise PreconditionFailed(f"X-Broker-API-Version must look like 2.17, got {value[:32]!r}")
    if (int(match[1]), int(match[2])) < MIN_API_VERSION:
        raise PreconditionFailed(
            f"this broker requires X-Broker-API-Version {MIN_API_VERSION[0]}.{MIN_API_VERSION[1]} or later"
        )


def originating_identity(value: str | None, request_id: str | None) -> Caller:
    """Decode ``X-Broker-API-Originating-Identity: <platform> <base64 JSON object>``."""
    if not value:
        return Caller(request_id=request_id)
    platform, _, encoded = value.strip().partition(" ")
    try:
        decoded = json.loads(base64.b64decode(encoded.strip(), validate=True))
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("X-Broker-API-Originating-Identity must be '<platform> <base64 JSON object>'") from exc
    if not isinstance(decoded, dict):
        raise InvalidInput("X-Broker-API-Originating-Identity must carry a JSON object")
    user_id = decoded.get("user_id")
    user = str(user_id) if user_id is not None else None
    if "\x00" in platform or (user is not None and "\x00" in user):
        raise InvalidInput("X-Broker-API-Originating-Identity must not contain NUL characters")
    return Caller(platform=platform[:64] or None, user_id=user, request_id=request_id)


def check_id(kind: str, value: str) -> str:
    if not value or len(value) > ID_LENGTH:
        raise InvalidInput(f"{kind} must be 1 to {ID_LENGTH} characters")
    if _CONTROL.search(value):
        raise InvalidInput(f"{kind} must not contain control characters")
    return value


def parse_body(raw: bytes, mimetype: str) -> dict[str, Any]:
    if mimetype != "application/json":
        raise InvalidInput("the request body must be JSON sent with Content-Type: application/json")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("the request body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    return body


def provision_request(instance_id: str, body: Mapping[str, Any], catalog: Catalog) -> ProvisionRequest:
    service_id, plan_id, scope = _service_and_plan(body, catalog)
    _check_common(body)
    context = _object(body, "context") or {}
    org = _guid_from(body, context, "organization_guid")
    space = _guid_from(body, context, "space_guid")
    return ProvisionRequest(
        instance_id=check_id("instance_id", instance_id),
        service_id=service_id,
        plan_id=plan_id,
        scope=scope,
        organization_guid=org,
        space_guid=space,
        organization_name=_name(context, "organization_name"),
        space_name=_name(context, "space_name"),
        instance_name=_name(context, "instance_name"),
    )


def update_request(instance_id: str, body: Mapping[str, Any], catalog: Catalog) -> UpdateRequest:
    service_id = _known_service(body, catalog, required=True)
    plan_id = _string(body, "plan_id", required=False)
    scope = None
    if plan_id is not None:
        scope = catalog.scope_of(plan_id)
        if scope is None:
            raise InvalidInput(f"plan_id {plan_id!r} is not a plan of service {service_id}")
    _check_common(body)
    _object(body, "previous_values")
    context = _object(body, "context") or {}
    return UpdateRequest(
        instance_id=check_id("instance_id", instance_id),
        service_id=service_id,
        plan_id=plan_id,
        scope=scope,
        organization_guid=_string(context, "organization_guid", required=False, where="context."),
        space_guid=_string(context, "space_guid", required=False, where="context."),
        organization_name=_name(context, "organization_name"),
        space_name=_name(context, "space_name"),
        instance_name=_name(context, "instance_name"),
    )


def bind_request(instance_id: str, binding_id: str, body: Mapping[str, Any], catalog: Catalog) -> BindRequest:
    service_id, plan_id, _ = _service_and_plan(body, catalog)
    _check_common(body)
    _object(body, "context")
    resource = _object(body, "bind_resource") or {}
    app_guid = _string(body, "app_guid", required=False)
    resource_app = _string(resource, "app_guid", required=False, where="bind_resource.")
    if app_guid and resource_app and app_guid != resource_app:
        raise InvalidInput("app_guid and bind_resource.app_guid differ")
    return BindRequest(
        instance_id=check_id("instance_id", instance_id),
        binding_id=check_id("binding_id", binding_id),
        service_id=service_id,
        plan_id=plan_id,
        app_guid=app_guid or resource_app or None,
    )


def deprovision_request(instance_id: str, args: Mapping[str, str], catalog: Catalog) -> DeprovisionRequest:
    """DELETE on an instance: service_id and plan_id are required query parameters."""
    service_id, plan_id, _ = _service_and_plan(args, catalog)
    return DeprovisionRequest(check_id("instance_id", instance_id), service_id, plan_id)


def unbind_request(instance_id: str, binding_id: str, args: Mapping[str, str], catalog: Catalog) -> UnbindRequest:
    """DELETE on a binding: service_id and plan_id are required query parameters."""
    service_id, plan_id, _ = _service_and_plan(args, catalog)
    return UnbindRequest(check_id("instance_id", instance_id), check_id("binding_id", binding_id), service_id, plan_id)


def instance_query(instance_id: str, args: Mapping[str, str], catalog: Catalog) -> InstanceQuery:
    """GET instance and last_operation: service_id and plan_id are optional, but must be ours if sent."""
    service_id, plan_id = _optional_ids(args, catalog)
    return InstanceQuery(check_id("instance_id", instance_id), service_id, plan_id)


def binding_query(instance_id: str, binding_id: str, args: Mapping[str, str], catalog: Catalog) -> BindingQuery:
    service_id, plan_id = _optional_ids(args, catalog)
    return BindingQuery(check_id("instance_id", instance_id), check_id("binding_id", binding_id), service_id, plan_id)


# -- helpers -----------------------------------------------------------------------------


def _service_and_plan(body: Mapping[str, Any], catalog: Catalog) -> tuple[str, str, Scope]:
    service_id = _known_service(body, catalog, required=True)
    plan_id = _string(body, "plan_id", required=True)
    assert plan_id is not None
    scope = catalog.scope_of(plan_id)
    if scope is None:
        raise InvalidInput(f"plan_id {plan_id!r} is not a plan of service {service_id}")
    return service_id, plan_id, scope


def _optional_ids(args: Mapping[str, str], catalog: Catalog) -> tuple[str | None, str | None]:
    service_id = args.get("service_id")
    if service_id is not None and service_id != catalog.service_id:
        raise InvalidInput(f"service_id {service_id!r} is not offered by this broker")
    plan_id = args.get("plan_id")
    if plan_id is not None and catalog.scope_of(plan_id) is None:
        raise InvalidInput(f"plan_id {plan_id!r} is not a plan of this broker")
    return service_id, plan_id


def _known_service(body: Mapping[str, Any], catalog: Catalog, required: bool) -> str:
    service_id = _string(body, "service_id", required=required)
    assert service_id is not None
    if service_id != catalog.service_id:
        raise InvalidInput(f"service_id {service_id!r} is not offered by this broker")
    return service_id


def _check_common(body: Mapping[str, Any]) -> None:
    parameters = _object(body, "parameters")
    if parameters:
        names = ", ".join(sorted(parameters)[:10])
        raise InvalidInput(f"this service takes no parameters; unknown parameter(s): {names}")
    # OSB: maintenance_info.version is what the platform compares; an object without one
    # (Cloud Controller may send {}) says nothing and counts as absent.
    maintenance = _object(body, "maintenance_info") or {}
    version = maintenance.get("version")
    if version is not None:
        if not isinstance(version, str):
            raise InvalidInput("maintenance_info.version must be a string")
        raise Unprocessable(
            "MaintenanceInfoConflict",
            "maintenance_info.version was sent but this broker's plans declare no maintenance_info",
        )


def _string(body: Mapping[str, Any], key: str, required: bool, where: str = "") -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise InvalidInput(f"{where}{key} is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{where}{key} must be a non-empty string")
    if len(value) > ID_LENGTH:
        raise InvalidInput(f"{where}{key} must be at most {ID_LENGTH} characters")
    if _CONTROL.search(value):
        raise InvalidInput(f"{where}{key} must not contain control characters")
    return value


def _object(body: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput(f"{key} must be a JSON object")
    return value


def _guid_from(body: Mapping[str, Any], context: Mapping[str, Any], key: str) -> str:
    top = _string(body, key, required=False)
    ctx = _string(context, key, required=False, where="context.")
    if top and ctx and top != ctx:
        raise InvalidInput(f"{key} and context.{key} differ")
    value = ctx or top
    if value is None:
        raise InvalidInput(f"{key} is required (in context or at the top level)")
    return value


def _name(context: Mapping[str, Any], key: str) -> str | None:
    value = context.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"context.{key} must be a string")
    if "\x00" in value:
        raise InvalidInput(f"context.{key} must not contain NUL characters")
    return value[:NAME_LENGTH]
