"""Dashboard SSO test world: the fake Cloud Controller/UAA with users and roles, the real
gateway with SSO on, a recording Prometheus, and a browser-like sign-in over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from urllib.parse import urljoin

import requests
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.config import GatewaySettings
from gateway.sso.settings import SsoSettings
from tenant_metrics.fakes.cloudcontroller import FakeCloudController
from tenant_metrics.world import TenantCreds, add_tenant, free_port, serve_app

TIMEOUT = 10
CLIENT_ID = "tenant-metrics-dashboard"
CLIENT_SECRET = "dashboard-client-secret-0123456789"
SESSION_SECRET = "session-secret-0123456789abcdefghijklmnop"
PASSWORD = "correct horse battery staple"
# user -> roles: (kind, guid, role)
USERS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "dev": (("space", "space-a", "space_developer"),),
    "auditor": (("space", "space-a", "space_auditor"),),
    "orgmanager": (("org", "org-1", "organization_manager"),),
    "orgauditor": (("org", "org-1", "organization_auditor"),),
    "nobody": (),
    "elsewhere": (("space", "space-b", "space_developer"),),
}


@dataclass
class SsoWorld:
    fake: FakeCloudController
    space_tenant: TenantCreds  # space plan, space-a in org-1
    org_tenant: TenantCreds  # org plan, space-b in org-2
    database_url: str
    upstream_url: str
    public_port: int  # every gateway here shares GATEWAY_PUBLIC_URL http://127.0.0.1:<public_port>

    def sso_settings(self, public_url: str, **overrides: object) -> SsoSettings:
        base = SsoSettings(CLIENT_ID, CLIENT_SECRET, self.fake.url, public_url, (SESSION_SECRET,))
        return replace(base, **overrides)  # type: ignore[arg-type]

    @contextmanager
    def gateway(self, port: int | None = None, registry: CollectorRegistry | None = None,
                **sso_overrides: object) -> Iterator[str]:
        """A gateway with SSO on, served on ``port`` (a free one unless given); its
        GATEWAY_PUBLIC_URL is the shared public one, as for several instances behind a router."""
        port = port or free_port()
        public = f"http://127.0.0.1:{self.public_port}"
        settings = GatewaySettings(
            prometheus_urls=(self.upstream_url,), database_url=self.database_url, health_check_seconds=0.2,
            rate_limit_per_second=10000.0, rate_limit_burst=10000,
            sso=self.sso_settings(public, **sso_overrides),
        )
        with serve_app(create_app(settings, registry or CollectorRegistry()), port=port) as url:
            yield url


def make_fake(space_tenant: TenantCreds, org_tenant: TenantCreds, callback_url: str) -> FakeCloudController:
    fake = FakeCloudController().start()
    fake.add_owner(space_tenant.instance_id, "metrics-a", "space-a", "space-a", "org-1", "org-one")
    fake.add_owner(org_tenant.instance_id, "metrics-b", "space-b", "space-b", "org-2", "org-two")
    fake.add_dashboard_client(CLIENT_ID, CLIENT_SECRET, callback_url)
    for user, roles in USERS.items():
        fake.add_user(user, PASSWORD)
        for kind, guid, role in roles:
            if kind == "space":
                fake.add_space_role(user, guid, role)
            else:
                fake.add_org_role(user, guid, role)
    return fake


def tenants(database_url: str) -> tuple[TenantCreds, TenantCreds]:
    return (add_tenant(database_url, "space", "org-1", "space-a", "metrics-a"),
            add_tenant(database_url, "org", "org-2", "space-b", "metrics-b"))


class _Inputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self.action = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "input" and a.get("name"):
            self.values[a["name"] or ""] = a.get("value") or ""
        if tag == "form" and a.get("action"):
            self.action = a["action"] or ""


def start(browser: requests.Session, gateway: str, instance: str) -> str:
    """Open the dashboard URL; returns where it sends the browser (the authorize URL)."""
    resp = browser.get(f"{gateway}/ui/instances/{instance}", allow_redirects=False, timeout=TIMEOUT)
    assert resp.status_code == 303, resp.text
    return resp.headers["Location"]


def log_in_at_uaa(browser: requests.Session, authorize: str, user: str, password: str = PASSWORD) -> str:
    """Follow the login server as a browser would: the form, the credentials, the approval.
    Returns the callback URL the login server sends the browser to."""
    resp = browser.get(authorize, allow_redirects=False, timeout=TIMEOUT)
    if resp.status_code == 302 and "/login/login" in resp.headers["Location"]:
        form_url = urljoin(authorize, resp.headers["Location"])
        form = browser.get(form_url, timeout=TIMEOUT)
        parser = _Inputs()
        parser.feed(form.text)
        data = {**parser.values, "username": user, "password": password}
        resp = browser.post(urljoin(form_url, parser.action), data=data, allow_redirects=False, timeout=TIMEOUT)
        assert resp.status_code == 302, resp.text
        resp = browser.get(urljoin(form_url, resp.headers["Location"]), allow_redirects=False, timeout=TIMEOUT)
    assert resp.status_code == 302, (resp.status_code, resp.text[:300])
    return resp.headers["Location"]


def sign_in(browser: requests.Session, gateway: str, instance: str, user: str) -> requests.Response:
    """The whole dashboard sign-in; returns the gateway's answer to the callback."""
    callback = log_in_at_uaa(browser, start(browser, gateway, instance), user)
    return browser.get(callback, allow_redirects=False, timeout=TIMEOUT)
