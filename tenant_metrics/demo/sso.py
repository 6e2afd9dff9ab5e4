"""Dashboard single sign-on in the demo: the UAA client, demo users with Cloud Foundry roles,
and the table that says which dashboards each user opens.

The fake Cloud Controller plays UAA and the login server. As Cloud Controller does when a
broker is registered, the demo registers the ``dashboard_client`` of the broker's catalog
with UAA; the users and their roles are the demo's own.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tenant_metrics.demo.tenants import TENANTS, Tenant
from tenant_metrics.fakes.cloudcontroller import FakeCloudController
from tenant_metrics.world import WorldError

CLIENT_ID = "tenant-metrics-dashboard"
CLIENT_SECRET = "demo-dashboard-client-secret-7f3a"
# Cloud Controller lets any space role read the space's service instances, and org managers
# every instance of their org; the other org roles (auditor, billing manager, user) read none.
ORG_READER = "organization_manager"


@dataclass(frozen=True, slots=True)
class DemoUser:
    """A UAA user of the demo; ``role`` (a Cloud Controller space or org role, None for no
    role) is held in ``tenant``'s space (space roles) or org (org roles)."""

    name: str
    password: str = field(repr=False)
    role: str | None = None
    tenant: Tenant | None = None

    @property
    def role_text(self) -> str:
        if self.role is None or self.tenant is None:
            return "no role"
        role = self.role.replace("organization_", "org ").replace("_", " ")
        if self.role.startswith("space_"):
            return f"{role} in {self.tenant.org_name}/{self.tenant.space_name}"
        return f"{role} of {self.tenant.org_name}"

    def readable(self, tenants: Sequence[Tenant] = TENANTS) -> tuple[Tenant, ...]:
        """The tenants whose metrics instance this user may read, so whose dashboard they open."""
        if self.role is None or self.tenant is None:
            return ()
        if self.role.startswith("space_"):
            return tuple(t for t in tenants if t.space_guid == self.tenant.space_guid)
        if self.role == ORG_READER:
            return tuple(t for t in tenants if t.org_guid == self.tenant.org_guid)
        return ()


TENANT_A, TENANT_B = TENANTS
USERS = (
    DemoUser("a-developer", "demo-pw-grape-31", "space_developer", TENANT_A),
    DemoUser("a-auditor", "demo-pw-maple-72", "space_auditor", TENANT_A),
    DemoUser("b-org-manager", "demo-pw-cedar-58", "organization_manager", TENANT_B),
    DemoUser("a-org-auditor", "demo-pw-birch-14", "organization_auditor", TENANT_A),
    DemoUser("no-role", "demo-pw-aspen-96"),
)


@dataclass(frozen=True, slots=True)
class SsoEnv:
    """The environment that switches dashboard SSO on in the broker and in the gateway."""

    broker: dict[str, str] = field(repr=False)
    gateway: dict[str, str] = field(repr=False)


def sso_env(gateway_public_url: str) -> SsoEnv:
    """Both parts' SSO settings; the gateway's cookie key is new on every demo run."""
    client = {"DASHBOARD_CLIENT_ID": CLIENT_ID, "DASHBOARD_CLIENT_SECRET": CLIENT_SECRET,
              "GATEWAY_PUBLIC_URL": gateway_public_url}
    return SsoEnv(broker=dict(client), gateway={**client, "SESSION_SECRET": secrets.token_hex(32)})


def register_dashboard_client(cc: FakeCloudController, catalog: Mapping[str, Any]) -> None:
    """What Cloud Controller does with a catalog's ``dashboard_client`` on broker registration."""
    client = catalog["services"][0].get("dashboard_client")
    if not client:
        raise WorldError("the broker's catalog has no dashboard_client although SSO is on")
    cc.add_dashboard_client(client["id"], client["secret"], client["redirect_uri"])


def add_users(cc: FakeCloudController, users: Sequence[DemoUser] = USERS) -> None:
    for user in users:
        cc.add_user(user.name, user.password)
        if user.role is None or user.tenant is None:
            continue
        if user.role.startswith("space_"):
            cc.add_space_role(user.name, user.tenant.space_guid, user.role)
        else:
            cc.add_org_role(user.name, user.tenant.org_guid, user.role)


def guide_lines(dashboards: Mapping[str, str], users: Sequence[DemoUser] = USERS,
                tenants: Sequence[Tenant] = TENANTS) -> list[str]:
    """The printed SSO part of the guide: each instance's dashboard URL and the users' table.
    The table's first three columns are single words (user, password, dashboards)."""
    lines = ["Dashboard single sign-on (sign in at the fake Cloud Foundry login form):"]
    width = max(len(t.title) for t in tenants) + len(" dashboard")
    for t in tenants:
        lines.append(f"  {t.title + ' dashboard':<{width}}  {dashboards[t.label]}")
    lines += ["", "Demo users (open a dashboard URL in a private window, sign in as one of them):"]
    rows = [("user", "password", "opens", "role -> what the dashboard shows")]
    for user in users:
        readable = user.readable(tenants)
        opens = "+".join(t.letter for t in readable) or "none"
        shows = "; ".join(f"{t.title}'s metrics ("
                          + (f"space {t.space_name})" if t.plan == "space" else f"org {t.org_name})")
                          for t in readable) or "403 on every dashboard (no role that can read an instance)"
        rows.append((user.name, user.password, opens, f"{user.role_text} -> {shows}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        lines.append("  " + "  ".join(f"{cell:<{w}}" for cell, w in zip(row[:3], widths, strict=True))
                     + "  " + row[3])
    return lines
