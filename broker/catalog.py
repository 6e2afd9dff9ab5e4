"""The broker's catalog (pure): one service, a plan per scope, and lookups by id."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from openbrokerapi.catalog import (
    Schemas,
    ServiceDashboardClient,
    ServiceMetadata,
    ServicePlan,
    ServicePlanMetadata,
)
from openbrokerapi.service_broker import Service

from broker.config import CatalogSettings, DashboardClient
from tenant_metrics.core.labels import Scope

# The marketplace icon (cf marketplace, Stratos, Apps Manager): inline, so it needs no
# host of its own and cannot break when one moves. A line chart on blue, 64x64 SVG.
IMAGE_URL = "data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIHZpZXdCb3g9IjAgMCA2NCA2NCI+PHJlY3Qgd2lkdGg9IjY0IiBoZWlnaHQ9IjY0IiByeD0iMTIiIGZpbGw9IiMxZDRlZDgiLz48cGF0aCBkPSJNMTAgNDYgTDI0IDMwIEwzNCAzOCBMNTIgMTYiIGZpbGw9Im5vbmUiIHN0cm9rZT0iI2ZmZiIgc3Ryb2tlLXdpZHRoPSI1IiBzdHJva2UtbGluZWNhcD0icm91bmQiIHN0cm9rZS1saW5lam9pbj0icm91bmQiLz48Y2lyY2xlIGN4PSI1MiIgY3k9IjE2IiByPSI0IiBmaWxsPSIjZmJiZjI0Ii8+PC9zdmc+"

# This service takes no parameters: the JSON schema says so, and the broker refuses any.
NO_PARAMETERS_SCHEMA: Mapping[str, Any] = MappingProxyType(
    {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "object",
        "additionalProperties": False,
        "properties": {},
    }
)

_PLAN_TEXT = {
    Scope.SPACE: (
        "Space",
        "Query the metrics of the backing services in this instance's space.",
        [
            "Prometheus query API for the backing services of one space",
            "Works with Grafana's Prometheus data source",
            "Credentials per binding or service key, revoked on unbind",
        ],
    ),
    Scope.ORG: (
        "Organisation",
        "Query the metrics of every backing service in this instance's organisation.",
        [
            "Prometheus query API for the backing services of a whole organisation",
            "Works with Grafana's Prometheus data source",
            "Credentials per binding or service key, revoked on unbind",
        ],
    ),
}


@dataclass(frozen=True, slots=True)
class Catalog:
    """The ids Cloud Controller knows us by, and what each plan lets a binding see."""

    service_id: str
    service_name: str
    plan_scopes: Mapping[str, Scope]
    documentation_url: str
    support_url: str
    # Dashboard SSO: Cloud Controller registers this UAA client; None leaves the key out.
    dashboard_client: DashboardClient | None = None

    @classmethod
    def from_settings(cls, settings: CatalogSettings, dashboard_client: DashboardClient | None = None) -> Catalog:
        return cls(
            service_id=settings.service_id,
            service_name=settings.service_name,
            plan_scopes=MappingProxyType(
                {settings.space_plan_id: Scope.SPACE, settings.org_plan_id: Scope.ORG}
            ),
            documentation_url=settings.documentation_url,
            support_url=settings.support_url,
            dashboard_client=dashboard_client,
        )

    def scope_of(self, plan_id: str) -> Scope | None:
        return self.plan_scopes.get(plan_id)

    def plan_id_of(self, scope: Scope) -> str:
        return next(pid for pid, s in self.plan_scopes.items() if s is scope)

    def to_osb(self) -> Service:
        """The catalog entry as openbrokerapi serialises it (GET /v2/catalog)."""
        plans = [self._plan(plan_id, scope) for plan_id, scope in self.plan_scopes.items()]
        return Service(
            id=self.service_id,
            name=self.service_name,
            description="Prometheus metrics of your backing services, scoped to your space or organisation",
            bindable=True,
            plans=plans,
            tags=["metrics", "prometheus", "aiven"],
            plan_updateable=True,
            instances_retrievable=True,
            # Credentials are returned at bind time (and by an identical repeat of the
            # bind); there is no endpoint that hands them out again. See docs/broker.md.
            bindings_retrievable=False,
            allow_context_updates=True,
            metadata=ServiceMetadata(
                displayName="Tenant metrics",
                longDescription=(
                    "Query the Prometheus metrics of the Aiven-hosted backing services in your "
                    "space (plan 'space') or your whole organisation (plan 'org'). Each binding "
                    "or service key gets its own credentials for a Prometheus-compatible query "
                    "API that Grafana, promtool and the Prometheus UI can use unchanged."
                ),
                providerDisplayName="Cloud Foundry platform team",
                imageUrl=IMAGE_URL,
                documentationUrl=self.documentation_url,
                supportUrl=self.support_url,
                shareable=False,
            ),
            dashboard_client=self._dashboard_client(),
        )

    def _dashboard_client(self) -> ServiceDashboardClient | None:
        client = self.dashboard_client
        if client is None:
            return None  # openbrokerapi leaves None-valued keys out of the JSON
        return ServiceDashboardClient(id=client.id, secret=client.secret, redirect_uri=client.redirect_uri)

    def _plan(self, plan_id: str, scope: Scope) -> ServicePlan:
        display, description, bullets = _PLAN_TEXT[scope]
        schema = {"parameters": dict(NO_PARAMETERS_SCHEMA)}
        return ServicePlan(
            id=plan_id,
            name=scope.value,
            description=description,
            metadata=ServicePlanMetadata(displayName=display, bullets=list(bullets)),
            free=True,
            bindable=True,
            plan_updateable=True,
            schemas=Schemas(
                service_instance={"create": dict(schema), "update": dict(schema)},
                service_binding={"create": dict(schema)},
            ),
        )
