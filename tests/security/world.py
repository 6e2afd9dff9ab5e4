"""A small real system to attack: exporters, Prometheus (sd's scrape job), broker and gateway.

Three Aiven-like services in two orgs; three tenants bound through the broker's OSB API:

- ``alpha`` (plan space, org-1/space-1) may see service ``alpha`` only;
- ``org1`` (plan org, org-1) may see ``alpha`` and ``amber`` (org-1/space-2);
- ``bravo`` (plan space, org-2/space-3) may see ``bravo`` only.

Service ``bravo`` is hostile: its exporter emits series carrying *alpha's* tenant labels
(an attempt to inject data into alpha's view) and a metric HELP text of its own.

Everything listens on loopback; the broker and the gateway run as production runs them
(``tenant-metrics broker`` / ``tenant-metrics gateway``, gunicorn) at LOG_LEVEL=DEBUG
so that the log test sees as much as the processes can ever write.

The gateway has dashboard SSO on, against the fake Cloud Controller/UAA: each tenant's
instance is known there in its org and space, and one user per tenant with a role that
lets them read it has signed in through the dashboard URL (``World.sessions``: a browser's
cookie jar holding nothing but the session cookie).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from sd.promconfig import scrape_job
from tenant_metrics.core import db
from tenant_metrics.core import labels as L
from tenant_metrics.fakes.cloudcontroller import FakeCloudController
from tenant_metrics.world import (
    Bound,
    Child,
    bind,
    catalog_service,
    children,
    free_port,
    osb,
    provision,
    start_broker,
    start_gateway,
    start_prometheus,
    wait_for_series,
)
from tests.gateway.sso_support import log_in_at_uaa, start

BROKER_USER, BROKER_PASSWORD = "cloud-controller", "security-tests-broker-password-4f1c2d"
SCRAPE_USER, SCRAPE_PASSWORD = "prom-scraper", "security-tests-scrape-password"

ORG1, ORG2 = "0e0e0001-0000-4000-8000-0000000000a1", "0e0e0002-0000-4000-8000-0000000000b2"

# Dashboard SSO: the UAA client Cloud Controller registers from the broker's catalog, the
# gateway's cookie key, and the one password every test user signs in with.
DASHBOARD_CLIENT_ID = "tenant-metrics-dashboard"
DASHBOARD_CLIENT_SECRET = "security-tests-dashboard-secret-7d3a9e"
SESSION_SECRET = "security-tests-session-secret-0123456789abcdef"
USER_PASSWORD = "security-tests-user-password-c0ffee"
SSO_RECHECK_SECONDS = 5  # short, so the attacks also run on sessions renewed by a recheck


@dataclass(frozen=True, slots=True)
class Service:
    key: str
    address: str  # loopback IP of its one node
    labels: dict[str, str]

    @property
    def guid(self) -> str:
        return self.labels[L.CF_SERVICE_INSTANCE_GUID]


def _service(key: str, ip: str, org: str, org_name: str, space: str, space_name: str, guid: str) -> Service:
    return Service(key, ip, {
        L.CF_ORGANIZATION_GUID: org,
        L.CF_SPACE_GUID: space,
        L.CF_SERVICE_INSTANCE_GUID: guid,
        L.CF_ORGANIZATION_NAME: org_name,
        L.CF_SPACE_NAME: space_name,
        L.CF_SERVICE_INSTANCE_NAME: f"{key}-instance-name",
        L.AIVEN_SERVICE_NAME: f"tm-{guid}",
        L.AIVEN_SERVICE_TYPE: "opensearch",
        L.AIVEN_PLAN: "business-4",
        L.AIVEN_CLOUD: "aws-eu-west-2",
    })


SERVICES = {
    s.key: s
    for s in (
        _service("alpha", "127.0.0.21", ORG1, "org-one-name", "5e5e0001-0000-4000-8000-0000000000a1",
                 "space-one-name", "5c5c0001-0000-4000-8000-0000000000a1"),
        _service("amber", "127.0.0.22", ORG1, "org-one-name", "5e5e0002-0000-4000-8000-0000000000a2",
                 "space-two-name", "5c5c0002-0000-4000-8000-0000000000a2"),
        _service("bravo", "127.0.0.23", ORG2, "org-two-name", "5e5e0003-0000-4000-8000-0000000000b3",
                 "space-three-name", "5c5c0003-0000-4000-8000-0000000000b3"),
    )
}
ALPHA, AMBER, BRAVO = SERVICES["alpha"], SERVICES["amber"], SERVICES["bravo"]
# What bravo's exporter writes onto its own series to try to land in alpha's view.
INJECTED = {L.CF_ORGANIZATION_GUID: ORG1, L.CF_SPACE_GUID: ALPHA.labels[L.CF_SPACE_GUID],
            L.CF_SERVICE_INSTANCE_GUID: ALPHA.guid}


def exposition(service: Service, elapsed: float) -> str:
    """Prometheus text format for one node; counters grow so rate() sees data."""
    key = service.key
    lines = [
        "# HELP shared_metric help-from-" + key,
        "# TYPE shared_metric gauge",
        f'shared_metric{{node="{key}-node-1"}} 1',
        f"# HELP {key}_only_metric a metric only {key} has",
        f"# TYPE {key}_only_metric gauge",
        f"{key}_only_metric 42",
        "# TYPE requests_total counter",
        f'requests_total{{node="{key}-node-1"}} {int(elapsed * 10)}',
    ]
    if key == "bravo":
        labels = ",".join(f'{k}="{v}"' for k, v in INJECTED.items())
        lines += [f"injected_metric{{{labels}}} 1", 'xss_probe{payload="<img src=x onerror=alert(1)>"} 1']
    return "\n".join(lines) + "\n"


# The user who signs in for each tenant, and the Cloud Foundry role that lets them read its
# instance: (user, "space" or "org", role). org1's user manages the org and has no space role.
SSO_USERS: dict[str, tuple[str, str, str]] = {
    "alpha": ("alpha-developer", "space", "space_developer"),
    "org1": ("org1-manager", "org", "organization_manager"),
    "bravo": ("bravo-auditor", "space", "space_auditor"),
}


class _Exporter:
    def __init__(self, service: Service) -> None:
        started = time.monotonic()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = exposition(service, time.monotonic() - started).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer((service.address, 0), Handler)
        self.address = f"{service.address}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


Creds = Bound
AUTH = (BROKER_USER, BROKER_PASSWORD)


@dataclass
class World:
    workdir: Path
    gateway: str
    prometheus: str
    broker: str
    database_url: str
    service_id: str
    plans: dict[str, str]
    tenants: dict[str, Creds]
    issued: list[Creds] = field(default_factory=list)  # every credential ever issued here
    # Dashboard SSO: a signed-in browser per tenant (its cookie jar holds the session cookie),
    # and the fake Cloud Controller/UAA those users signed in at.
    sessions: dict[str, requests.Session] = field(default_factory=dict)
    cloud_controller: FakeCloudController | None = None

    def sign_in(self, user: str, instance_id: str) -> tuple[requests.Session, requests.Response]:
        """A fresh browser opening ``instance_id``'s dashboard URL as ``user``; returns it and
        the gateway's answer to the callback (303 to /ui/ with a session cookie, or a refusal)."""
        browser = requests.Session()
        browser.trust_env = False  # nothing from the environment (no .netrc Authorization)
        callback = log_in_at_uaa(browser, start(browser, self.gateway, instance_id), user, USER_PASSWORD)
        return browser, browser.get(callback, allow_redirects=False, timeout=30)

    def osb(self, method: str, path: str, **kw: Any) -> requests.Response:
        return osb(self.broker, AUTH, method, path, **kw)

    def provision_and_bind(self, plan: str, org: str, space: str) -> Creds:
        return self.bind(provision(self.broker, AUTH, self.service_id, self.plans[plan], org, space), plan)

    def bind(self, iid: str, plan: str) -> Creds:
        creds = bind(self.broker, AUTH, self.service_id, self.plans[plan], iid)
        self.issued.append(creds)
        return creds


def _prometheus(binary: str, workdir: Path, exporters: dict[str, _Exporter]) -> Child:
    """A real Prometheus running sd's own scrape job (honor_labels etc.) over plain HTTP."""
    workdir.mkdir(parents=True, exist_ok=True)
    targets = workdir / "targets.json"
    targets.write_text(json.dumps([
        {"targets": [exporters[key].address], "labels": SERVICES[key].labels} for key in sorted(SERVICES)
    ]))
    password_file = workdir / "scrape-password"
    password_file.write_text(SCRAPE_PASSWORD)
    job = scrape_job(targets_file=str(targets), username=SCRAPE_USER, password_file=str(password_file),
                     ca_file=str(workdir / "unused-ca.pem"), scrape_interval="1s", scrape_timeout="1s")
    job["scheme"] = "http"  # our exporters speak plain HTTP; everything else is sd's job as rendered
    job.pop("tls_config")
    job["file_sd_configs"][0]["refresh_interval"] = "1s"
    return start_prometheus(workdir, {"global": {"scrape_interval": "1s"}, "scrape_configs": [job]}, binary=binary)


@contextmanager
def running_world(workdir: Path, prometheus_binary: str, database_url: str) -> Iterator[World]:
    """The whole system on ``database_url`` (an empty database: migrated here).

    The broker and the gateway log at DEBUG: the log tests see all they can ever write."""
    db.upgrade(database_url)
    with ExitStack() as stack:
        cloud_controller = FakeCloudController().start()
        stack.callback(cloud_controller.stop)
        gateway_port = free_port()
        public_url = f"http://127.0.0.1:{gateway_port}"
        cloud_controller.add_dashboard_client(DASHBOARD_CLIENT_ID, DASHBOARD_CLIENT_SECRET,
                                              f"{public_url}/ui/sso/callback")
        exporters = {}
        for key, service in SERVICES.items():
            exporters[key] = _Exporter(service)
            stack.callback(exporters[key].stop)
        procs = stack.enter_context(children())
        prometheus = procs.add(_prometheus(prometheus_binary, workdir / "prometheus", exporters))
        wait_for_series(prometheus.url, "up == 1", len(SERVICES))
        wait_for_series(prometheus.url, "injected_metric", 1)
        gateway = procs.add(start_gateway(
            [prometheus.url], database_url, workdir / "gateway",
            extra_env={"GATEWAY_RATE_LIMIT_PER_SECOND": "2000", "GATEWAY_RATE_LIMIT_BURST": "2000",
                       "LOG_LEVEL": "DEBUG",
                       "DASHBOARD_CLIENT_ID": DASHBOARD_CLIENT_ID, "DASHBOARD_CLIENT_SECRET": DASHBOARD_CLIENT_SECRET,
                       "CF_API_URL": cloud_controller.url, "GATEWAY_PUBLIC_URL": public_url,
                       "SESSION_SECRET": SESSION_SECRET, "SSO_RECHECK_SECONDS": str(SSO_RECHECK_SECONDS)},
            port=gateway_port,
        )).url
        assert gateway == public_url, (gateway, public_url)
        broker = procs.add(start_broker(database_url, workdir / "broker", BROKER_USER, BROKER_PASSWORD,
                                        gateway_url=gateway, extra_env={"LOG_LEVEL": "DEBUG"})).url
        service_id, plans = catalog_service(broker, AUTH)
        world = World(workdir, gateway, prometheus.url, broker, database_url, service_id, plans, {},
                      cloud_controller=cloud_controller)
        world.tenants["alpha"] = world.provision_and_bind("space", ORG1, ALPHA.labels[L.CF_SPACE_GUID])
        world.tenants["org1"] = world.provision_and_bind("org", ORG1, ALPHA.labels[L.CF_SPACE_GUID])
        world.tenants["bravo"] = world.provision_and_bind("space", ORG2, BRAVO.labels[L.CF_SPACE_GUID])
        _sign_everyone_in(world, cloud_controller)
        yield world


def _sign_everyone_in(world: World, cloud_controller: FakeCloudController) -> None:
    """Cloud Controller learns each tenant's instance where the broker provisioned it; each
    tenant's user gets their role and signs in on that instance's dashboard URL."""
    homes = {"alpha": ALPHA, "org1": ALPHA, "bravo": BRAVO}
    for tenant, service in homes.items():
        labels = service.labels
        cloud_controller.add_owner(world.tenants[tenant].instance_id, f"{tenant}-metrics",
                                   labels[L.CF_SPACE_GUID], labels[L.CF_SPACE_NAME],
                                   labels[L.CF_ORGANIZATION_GUID], labels[L.CF_ORGANIZATION_NAME])
    for tenant, (user, kind, role) in SSO_USERS.items():
        cloud_controller.add_user(user, USER_PASSWORD)
        labels = homes[tenant].labels
        if kind == "space":
            cloud_controller.add_space_role(user, labels[L.CF_SPACE_GUID], role)
        else:
            cloud_controller.add_org_role(user, labels[L.CF_ORGANIZATION_GUID], role)
        browser, answer = world.sign_in(user, world.tenants[tenant].instance_id)
        assert answer.status_code == 303 and answer.headers.get("Location") == "/ui/", (tenant, answer.status_code)
        assert "tm_sso_login" not in [c.name for c in browser.cookies]  # the callback ended the sign-in
        # The fake login server shares 127.0.0.1 (cookies ignore ports): keep only the gateway's session.
        for cookie in [c for c in browser.cookies if c.name != "tm_session"]:
            browser.cookies.clear(cookie.domain, cookie.path, cookie.name)
        assert [c.name for c in browser.cookies] == ["tm_session"], [c.name for c in browser.cookies]
        world.sessions[tenant] = browser
