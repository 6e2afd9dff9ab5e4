"""Tenants made through the broker's real OSB API, the way Cloud Controller makes them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import requests

from tenant_metrics.world.errors import WorldError


@dataclass(frozen=True, slots=True)
class Bound:
    """A provisioned instance and one binding's credentials."""

    instance_id: str
    binding_id: str
    plan_id: str
    username: str = field(repr=False)
    password: str = field(repr=False)
    credentials: dict[str, Any] = field(repr=False, default_factory=dict)  # the whole OSB answer

    @property
    def auth(self) -> tuple[str, str]:
        return (self.username, self.password)


def osb(broker: str, auth: tuple[str, str], method: str, path: str, **kw: Any) -> requests.Response:
    headers = {"X-Broker-API-Version": "2.17", "X-Broker-API-Request-Identity": str(uuid.uuid4()),
               **kw.pop("headers", {})}
    return requests.request(method, broker + path, auth=auth, headers=headers, timeout=30, **kw)


def _expect(resp: requests.Response, method: str, path: str) -> dict[str, Any]:
    if resp.status_code not in (200, 201):
        raise WorldError(f"broker {method} {path} answered {resp.status_code}: {resp.text[:300]}")
    return dict(resp.json())


def provision(broker: str, auth: tuple[str, str], service_id: str, plan_id: str, org: str, space: str, *,
              context: dict[str, str] | None = None, instance_id: str | None = None,
              headers: dict[str, str] | None = None) -> str:
    """PUT an instance of ``plan_id`` in ``org``/``space``; returns its id."""
    iid = instance_id or str(uuid.uuid4())
    ctx = {"platform": "cloudfoundry", "organization_guid": org, "space_guid": space, **(context or {})}
    path = f"/v2/service_instances/{iid}"
    _expect(osb(broker, auth, "PUT", path, headers=headers or {}, json={
        "service_id": service_id, "plan_id": plan_id, "organization_guid": org, "space_guid": space,
        "context": ctx}), "PUT", path)
    return iid


def bind(broker: str, auth: tuple[str, str], service_id: str, plan_id: str, instance_id: str, *,
         context: dict[str, str] | None = None, binding_id: str | None = None,
         headers: dict[str, str] | None = None) -> Bound:
    """PUT a service key (no app) on ``instance_id``; ``context`` is sent only when given."""
    bid = binding_id or str(uuid.uuid4())
    path = f"/v2/service_instances/{instance_id}/service_bindings/{bid}"
    body: dict[str, Any] = {"service_id": service_id, "plan_id": plan_id, "bind_resource": {}}
    if context is not None:
        body["context"] = context
    creds = _expect(osb(broker, auth, "PUT", path, headers=headers or {}, json=body), "PUT", path)["credentials"]
    return Bound(instance_id, bid, plan_id, creds["username"], creds["password"], creds)


def provision_and_bind(broker: str, auth: tuple[str, str], service_id: str, plan_id: str, org: str, space: str, *,
                       context: dict[str, str] | None = None, instance_id: str | None = None,
                       binding_id: str | None = None, headers: dict[str, str] | None = None) -> Bound:
    """``provision``, then ``bind`` with the same context (less the instance name)."""
    ctx = {"platform": "cloudfoundry", "organization_guid": org, "space_guid": space, **(context or {})}
    iid = provision(broker, auth, service_id, plan_id, org, space, context=ctx, instance_id=instance_id,
                    headers=headers)
    return bind(broker, auth, service_id, plan_id, iid, binding_id=binding_id, headers=headers,
                context={k: v for k, v in ctx.items() if k != "instance_name"})


def catalog_service(broker: str, auth: tuple[str, str]) -> tuple[str, dict[str, str]]:
    """The broker's one service id and its plans' ids by name."""
    service = _expect(osb(broker, auth, "GET", "/v2/catalog"), "GET", "/v2/catalog")["services"][0]
    return service["id"], {p["name"]: p["id"] for p in service["plans"]}
