"""The broker's values (pure): validated requests, stored records, fingerprints, credentials.

Every OSB operation has a frozen request type here. broker/validation.py builds them from
the HTTP request once, at the edge; broker/service.py takes them as they are."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from tenant_metrics.core.credentials import IssuedCredentials
from tenant_metrics.core.labels import Scope


class BindingKind(StrEnum):
    APP = "app"  # cf bind-service: Cloud Controller sends an app_guid
    KEY = "key"  # cf create-service-key: no app


class AuditAction(StrEnum):
    PROVISION = "provision"
    UPDATE = "update"
    DEPROVISION = "deprovision"
    BIND = "bind"
    UNBIND = "unbind"
    REVOKE = "revoke"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asked: the originating identity (OSB header) and the request identity."""

    platform: str | None = None
    user_id: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class ProvisionRequest:
    instance_id: str
    service_id: str
    plan_id: str
    scope: Scope
    organization_guid: str
    space_guid: str
    organization_name: str | None = None
    space_name: str | None = None
    instance_name: str | None = None

    def fingerprint(self) -> str:
        """What makes a repeat "identical" (OSB 200) rather than conflicting (409); names
        are left out because Cloud Controller may send a renamed context on a retry."""
        return fingerprint(
            service_id=self.service_id,
            plan_id=self.plan_id,
            organization_guid=self.organization_guid,
            space_guid=self.space_guid,
        )


@dataclass(frozen=True, slots=True)
class UpdateRequest:
    instance_id: str
    service_id: str
    plan_id: str | None = None
    scope: Scope | None = None
    organization_guid: str | None = None
    space_guid: str | None = None
    organization_name: str | None = None
    space_name: str | None = None
    instance_name: str | None = None


@dataclass(frozen=True, slots=True)
class BindRequest:
    instance_id: str
    binding_id: str
    service_id: str
    plan_id: str
    app_guid: str | None = None

    @property
    def kind(self) -> BindingKind:
        return BindingKind.APP if self.app_guid else BindingKind.KEY

    def fingerprint(self) -> str:
        # plan_id is left out: a plan update rescopes existing bindings, and a retried
        # bind after it must still be "identical".
        return fingerprint(instance_id=self.instance_id, service_id=self.service_id, app_guid=self.app_guid)


@dataclass(frozen=True, slots=True)
class DeprovisionRequest:
    instance_id: str
    service_id: str
    plan_id: str


@dataclass(frozen=True, slots=True)
class UnbindRequest:
    instance_id: str
    binding_id: str
    service_id: str
    plan_id: str


@dataclass(frozen=True, slots=True)
class InstanceQuery:
    """GET instance and its last_operation: service_id and plan_id are optional hints."""

    instance_id: str
    service_id: str | None = None
    plan_id: str | None = None


@dataclass(frozen=True, slots=True)
class BindingQuery:
    """GET binding and its last_operation."""

    instance_id: str
    binding_id: str
    service_id: str | None = None
    plan_id: str | None = None


@dataclass(frozen=True, slots=True)
class BindResult:
    """A binding's credentials as handed to the platform; ``created`` is False for a repeat."""

    created: bool
    credentials: dict[str, str] = field(repr=False)


def _field_reader(row: Any) -> Any:
    """``row.name`` for a result row, ``row["name"]`` for a mapping of values."""
    return row.__getitem__ if isinstance(row, Mapping) else (lambda name: getattr(row, name))


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    id: str
    service_id: str
    plan_id: str
    scope: Scope
    organization_guid: str
    space_guid: str
    organization_name: str | None
    space_name: str | None
    instance_name: str | None

    @classmethod
    def from_row(cls, row: Any) -> InstanceRecord:
        """The one place a service_instances row (or its values) becomes a record."""
        get = _field_reader(row)
        return cls(
            id=get("id"), service_id=get("service_id"), plan_id=get("plan_id"), scope=Scope(get("scope")),
            organization_guid=get("organization_guid"), space_guid=get("space_guid"),
            organization_name=get("organization_name"), space_name=get("space_name"),
            instance_name=get("instance_name"),
        )


@dataclass(frozen=True, slots=True)
class BindingRecord:
    id: str
    instance_id: str
    kind: BindingKind
    app_guid: str | None
    username: str
    secret_nonce: str = field(repr=False)
    password_sha256: str = field(repr=False, default="")

    @classmethod
    def from_row(cls, row: Any) -> BindingRecord:
        """The one place a bindings row becomes a record."""
        get = _field_reader(row)
        return cls(
            id=get("id"), instance_id=get("instance_id"), kind=BindingKind(get("kind")), app_guid=get("app_guid"),
            username=get("username"), secret_nonce=get("secret_nonce"), password_sha256=get("password_sha256"),
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of an idempotent write: ``created`` is False for an identical repeat."""

    created: bool
    instance: InstanceRecord
    binding: BindingRecord | None = None


def fingerprint(**values: Any) -> str:
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def binding_credentials(
    gateway_public_url: str, instance: InstanceRecord, issued: IssuedCredentials
) -> dict[str, str]:
    """What lands in VCAP_SERVICES / ``cf service-key``: enough to set up Grafana."""
    parts = urlsplit(gateway_public_url)
    netloc = f"{quote(issued.username, safe='')}:{quote(issued.password, safe='')}@{parts.netloc}"
    uri = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    scope_guid = instance.space_guid if instance.scope is Scope.SPACE else instance.organization_guid
    return {
        "uri": uri,
        "url": gateway_public_url,
        "username": issued.username,
        "password": issued.password,
        # A Grafana "Prometheus" data source: URL = prometheus_url, basic auth = username/password.
        "prometheus_url": gateway_public_url,
        "scope": instance.scope.value,
        "scope_label": instance.scope.label,
        "scope_guid": scope_guid,
        "organization_guid": instance.organization_guid,
        "space_guid": instance.space_guid,
        "service_instance_guid": instance.id,
    }
