"""`tenant-metrics demo`: the whole system on one machine, with fakes for what is remote.

It migrates a SQLite database, starts a fake Aiven API and a fake Cloud Controller (in
this process; it also plays UAA and the login server), Aiven-like exporters on loopback
addresses, then sd, Prometheus (when the binary is installed), the broker and the gateway
as child processes, exactly as an operator runs them. Dashboard single sign-on is on unless
``sso=False``: the broker's dashboard client is registered with the fake UAA, and demo users
with Cloud Foundry roles can sign in. Two example tenants are provisioned and bound through
the broker's real OSB API. It prints what to try and runs until Ctrl-C, then stops every child.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import requests

from tenant_metrics.core import db
from tenant_metrics.demo import sso as demo_sso
from tenant_metrics.demo.tenants import NODE_ADDRESSES, PREFIX, TENANTS
from tenant_metrics.world import (
    Children,
    FakeApis,
    WorldError,
    bind,
    children,
    free_port,
    osb,
    part_env,
    running_exporters,
    running_fake_apis,
    sd_config,
    serve_until_interrupted,
    start_broker,
    start_gateway,
    start_part,
    start_prometheus,
    wait_until,
)

AIVEN_TOKEN = "demo-aiven-token"
AIVEN_PROJECT = "tenant-metrics-demo"
ENDPOINT_ID = "demo-prometheus-endpoint"
SCRAPE_USER, SCRAPE_PASSWORD = "prom-scraper", "demo-scrape-password"
CF_CLIENT, CF_SECRET = "tenant-metrics-sd", "demo-cf-client-secret"
BROKER_USER, BROKER_PASSWORD = "cloud-controller", "demo-only-osb-secret-do-not-reuse-42"
BROKER_AUTH = (BROKER_USER, BROKER_PASSWORD)
IDENTITY = {"X-Broker-API-Originating-Identity": "cloudfoundry eyJ1c2VyX2lkIjogImRlbW8tdXNlciJ9"}


@dataclass(frozen=True, slots=True)
class Provisioned:
    """What the broker answered for each tenant: the instance's dashboard URL and a service key."""

    dashboards: dict[str, str]
    credentials: dict[str, dict[str, Any]] = field(repr=False)


@dataclass
class Ports:
    broker: int
    gateway: int
    sd: int
    scrape: int


@dataclass
class Demo:
    workdir: Path
    out: TextIO = field(default=sys.stdout)

    def say(self, message: str) -> None:
        print(message, file=self.out, flush=True)


@contextmanager
def _fakes(demo: Demo, scrape_port: int) -> Iterator[tuple[FakeApis, dict[str, list[str]]]]:
    """Fake Aiven + Cloud Controller with both tenants' services, and their exporters."""
    with running_fake_apis(demo.workdir / "tls", project=AIVEN_PROJECT, token=AIVEN_TOKEN, endpoint_id=ENDPOINT_ID,
                           scrape_user=SCRAPE_USER, scrape_password=SCRAPE_PASSWORD, cc_client=CF_CLIENT,
                           cc_secret=CF_SECRET) as apis:
        dns: dict[str, list[str]] = {}
        for t in TENANTS:
            apis.cc.add_owner(t.aiven_instance_guid, t.aiven_instance_name, t.space_guid, t.space_name,
                              t.org_guid, t.org_name)
            # The metrics instance too, as CC knows it once created: SSO asks for its permissions.
            apis.cc.add_instance(t.metrics_instance_guid, t.metrics_instance_name, t.space_guid)
            apis.aiven.add_service(t.aiven_name, t.service_type, node_count=len(t.nodes),
                                   tags={"organization_id": t.org_guid, "space_id": t.space_guid})
            dns[apis.aiven.host_of(t.aiven_name)] = list(t.nodes)
        layout = {t.aiven_name: list(t.nodes) for t in TENANTS}
        types = {t.aiven_name: {"service_type": t.service_type} for t in TENANTS}
        with running_exporters(layout, scrape_port, per_service=types, project=AIVEN_PROJECT, username=SCRAPE_USER,
                               password=SCRAPE_PASSWORD, tls=(apis.cert, apis.key)):
            yield apis, dns


def _catalog(broker_url: str) -> dict[str, Any]:
    resp = osb(broker_url, BROKER_AUTH, "GET", "/v2/catalog")
    if resp.status_code != 200:
        raise WorldError(f"broker GET /v2/catalog answered {resp.status_code}: {resp.text[:300]}")
    return dict(resp.json())


def _provision_and_bind(broker_url: str, catalog: dict[str, Any]) -> Provisioned:
    """Each tenant's instance and service key, as ``cf create-service`` and ``cf create-service-key``
    make them; the provision answer's dashboard URL is kept (``world.provision`` drops it)."""
    service = catalog["services"][0]
    plans = {p["name"]: p["id"] for p in service["plans"]}
    dashboards: dict[str, str] = {}
    creds: dict[str, dict[str, Any]] = {}
    for t in TENANTS:
        context = {"platform": "cloudfoundry", "organization_guid": t.org_guid, "space_guid": t.space_guid,
                   "organization_name": t.org_name, "space_name": t.space_name}
        path = f"/v2/service_instances/{t.metrics_instance_guid}"
        resp = osb(broker_url, BROKER_AUTH, "PUT", path, headers=IDENTITY, json={
            "service_id": service["id"], "plan_id": plans[t.plan], "organization_guid": t.org_guid,
            "space_guid": t.space_guid, "context": {**context, "instance_name": t.metrics_instance_name}})
        if resp.status_code not in (200, 201):
            raise WorldError(f"broker PUT {path} answered {resp.status_code}: {resp.text[:300]}")
        dashboards[t.label] = str(resp.json()["dashboard_url"])
        bound = bind(broker_url, BROKER_AUTH, service["id"], plans[t.plan], t.metrics_instance_guid,
                     context=context, binding_id=f"{t.label}-key", headers=IDENTITY)
        creds[t.label] = bound.credentials
    return Provisioned(dashboards, creds)


def _prometheus(demo: Demo, env: dict[str, str], procs: Children) -> str | None:
    if shutil.which("prometheus") is None:
        demo.say("  Prometheus: not installed (apt-get install prometheus); the gateway will answer 503")
        return None
    config = sd_config(env, demo.workdir, interval="5s", timeout="4s")
    return procs.add(start_prometheus(demo.workdir / "prometheus", config)).url


def run(workdir: Path, out: TextIO = sys.stdout, ready_file: Path | None = None,
        stop: threading.Event | None = None, sso: bool = True) -> int:
    """Start everything, print what to try, wait for ``stop`` (or SIGINT/SIGTERM), tear down."""
    workdir = workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    demo = Demo(workdir, out)
    # Fixed before anything starts: the gateway's URL is GATEWAY_PUBLIC_URL, the SSO callback's base.
    ports = Ports(free_port(), free_port(), free_port(), free_port(NODE_ADDRESSES))
    gateway_url = f"http://127.0.0.1:{ports.gateway}"
    sso_env = demo_sso.sso_env(gateway_url) if sso else demo_sso.SsoEnv({}, {})
    database = f"sqlite:///{workdir / 'demo.sqlite3'}"
    demo.say(f"[1/6] migrating the demo database ({database})")
    db.upgrade(database)
    try:
        with _fakes(demo, ports.scrape) as (apis, dns), children() as procs:
            demo.say(f"[2/6] fake Aiven at {apis.aiven.url}, fake Cloud Controller at {apis.cc.url}, "
                     f"{sum(len(t.nodes) for t in TENANTS)} Aiven-like exporters on port {ports.scrape}")
            (workdir / "dns.json").write_text(json.dumps(dns))
            settings = dict(DATABASE_URL=database, LOG_LEVEL="INFO",
                            AIVEN_API_URL=apis.aiven.url, AIVEN_API_TOKEN=AIVEN_TOKEN, AIVEN_PROJECT=AIVEN_PROJECT,
                            AIVEN_PROMETHEUS_ENDPOINT_ID=ENDPOINT_ID, AIVEN_SERVICE_PREFIX=PREFIX,
                            SD_TARGETS_FILE=str(workdir / "targets.json"), SD_INTERVAL_SECONDS="5",
                            SD_SCRAPE_PORT=str(ports.scrape), SD_LISTEN_PORT=str(ports.sd),
                            SD_DNS_OVERRIDES_FILE=str(workdir / "dns.json"),
                            CF_API_URL=apis.cc.url, CF_CLIENT_ID=CF_CLIENT, CF_CLIENT_SECRET=CF_SECRET)
            demo.say("[3/6] starting sd (integrates the Aiven services, writes targets.json)")
            procs.add(start_part("sd", ["run"], workdir, settings, port=ports.sd,
                                 ready=(workdir / "targets.json").exists))
            demo.say("[4/6] starting Prometheus")
            prometheus_url = _prometheus(demo, part_env(settings), procs)
            demo.say("[5/6] starting the broker and the gateway (gunicorn)"
                     + (", dashboard single sign-on on" if sso else ""))
            broker_url = procs.add(start_broker(database, workdir, BROKER_USER, BROKER_PASSWORD, workers=2,
                                                gateway_url=gateway_url, extra_env={**settings, **sso_env.broker},
                                                port=ports.broker, timeout=60)).url
            procs.add(start_gateway([prometheus_url or "http://127.0.0.1:9"], database, workdir,
                                    extra_env={**settings, **sso_env.gateway}, port=ports.gateway, timeout=60))
            catalog = _catalog(broker_url)
            if sso:
                demo_sso.register_dashboard_client(apis.cc, catalog)
                demo_sso.add_users(apis.cc)
            demo.say("[6/6] provisioning and binding two tenants through the broker's OSB API")
            provisioned = _provision_and_bind(broker_url, catalog)
            creds = provisioned.credentials
            if prometheus_url:
                for t in TENANTS:  # every tenant's services scraped at least once
                    cred = creds[t.label]
                    wait_until(lambda cred=cred: bool(  # type: ignore[misc]
                        requests.get(gateway_url + "/api/v1/query", params={"query": "up == 1"},
                                     auth=(cred["username"], cred["password"]), timeout=5)
                        .json().get("data", {}).get("result")),
                        90, f"{t.label}'s first scrape to reach the gateway", interval=0.25,
                        alive=procs.check_alive)
            _print_guide(demo, broker_url, gateway_url, prometheus_url, provisioned, sso)
            if ready_file is not None:
                ready_file.write_text(json.dumps({"gateway": gateway_url, "broker": broker_url,
                                                  "prometheus": prometheus_url, "credentials": creds,
                                                  "dashboards": provisioned.dashboards, "sso": sso}))
            serve_until_interrupted(procs.check_alive, stop)
            demo.say("stopping...")
    except KeyboardInterrupt:
        demo.say("interrupted while starting; stopped")
        return 130
    demo.say("stopped; logs and data are in " + str(workdir))
    return 0


def _print_guide(demo: Demo, broker: str, gateway: str, prometheus: str | None,
                 provisioned: Provisioned, sso: bool) -> None:
    a, b = (provisioned.credentials[t.label] for t in TENANTS)
    lines = [
        "",
        "tenant-metrics demo is running. Press Ctrl-C to stop.",
        f"  broker      {broker}   (OSB; basic auth {BROKER_USER} / see demo/runner.py)",
        f"  gateway     {gateway}   (the tenants' Prometheus API)",
        f"  prometheus  {prometheus or '(not running)'}   (the platform's own, unfiltered)",
        "",
        f"tenant A (plan 'space', org {TENANTS[0].org_name}, space {TENANTS[0].space_name}):",
        f"  username {a['username']}",
        f"  password {a['password']}",
        f"tenant B (plan 'org', org {TENANTS[1].org_name}):",
        f"  username {b['username']}",
        f"  password {b['password']}",
        "",
        "Try:",
        f"  curl -s -u '{a['username']}:{a['password']}' '{gateway}/api/v1/query?query=up' | python3 -m json.tool",
        f"  curl -s -u '{b['username']}:{b['password']}' '{gateway}/api/v1/label/cf_service_instance_name/values'",
        f"  promtool query instant '{a['uri']}' 'avg by (cf_service_instance_name) (cpu_usage_idle)'",
        f"  open {gateway}/ui/ in a browser and sign in with tenant A's or B's credentials",
        "",
    ]
    if sso:
        lines += [*demo_sso.guide_lines(provisioned.dashboards), ""]
    else:
        lines += [f"Dashboard single sign-on is off (--no-sso): the broker's dashboard URL is "
                  f"{provisioned.dashboards[TENANTS[0].label]}", ""]
    demo.say("\n".join(lines))
