"""End to end: real broker issues credentials, real Prometheus (x2) scrapes loopback
exporters of three services in two orgs, the gateway runs on gunicorn, and each tenant
sees exactly its own series, through the calls Grafana and promtool make."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry

from broker.app import create_app as create_broker
from broker.config import from_env as broker_from_env
from tenant_metrics.core import db
from tenant_metrics.world import (
    Bound,
    Child,
    Target,
    address,
    children,
    osb,
    provision_and_bind,
    running_exporters,
    serve_wsgi,
    start_gateway,
    start_prometheus,
    static_config,
    wait_for_series,
)

pytestmark = pytest.mark.e2e

# Three Aiven services: svc-a in org-1/space-a; svc-b and svc-c in org-2 (space-b, space-c).
SERVICES = {
    "svc-a": {"cf_organization_guid": "org-1", "cf_space_guid": "space-a"},
    "svc-b": {"cf_organization_guid": "org-2", "cf_space_guid": "space-b"},
    "svc-c": {"cf_organization_guid": "org-2", "cf_space_guid": "space-c"},
}
BROKER_USER, BROKER_PASSWORD = "cloud-controller", "e2e-broker-password-0123456789"


Creds = Bound
AUTH = (BROKER_USER, BROKER_PASSWORD)


@dataclass
class World:
    gateway: str
    primary: Child
    primary_url: str
    secondary_url: str
    broker: str
    service_id: str
    space_a: Creds  # space plan: sees svc-a only
    org_2: Creds  # org plan: sees svc-b and svc-c
    space_b: Creds  # space plan: sees svc-b only
    gateway_log: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, prometheus_binary: str) -> Iterator[World]:
    work = tmp_path_factory.mktemp("gateway-e2e")
    database_url = f"sqlite:///{work / 'tm.sqlite3'}"
    db.upgrade(database_url)
    layout = {name: ["127.0.0.1"] for name in SERVICES}
    with running_exporters(layout, username=None) as exporters, children() as procs:
        targets = [Target(address(e), {**labels, "cf_service_instance_guid": name})
                   for e, (name, labels) in zip(exporters, SERVICES.items())]
        primary = procs.add(start_prometheus(work / "p1", static_config(targets), binary=prometheus_binary))
        secondary = procs.add(start_prometheus(work / "p2", static_config(targets), binary=prometheus_binary))
        for url in (primary.url, secondary.url):
            wait_for_series(url, "up == 1", 3)
            wait_for_series(url, "cpu_usage_idle", 3)
            # rate() over 5 s needs two samples of every service: wait for them, not just one.
            wait_for_series(url, "rate(net_bytes_recv[5s])", 3)
        settings = broker_from_env({
            "BROKER_USERNAME": BROKER_USER, "BROKER_PASSWORD": BROKER_PASSWORD, "DATABASE_URL": database_url,
        })
        broker_app = create_broker(settings, registry=CollectorRegistry(), configure_logging=False)
        with serve_wsgi(broker_app) as broker:
            cat = settings.catalog
            gateway = procs.add(start_gateway(
                [primary.url, secondary.url], database_url, work / "gw",
                extra_env={"GATEWAY_RATE_LIMIT_PER_SECOND": "500", "GATEWAY_RATE_LIMIT_BURST": "500"},
            ))
            yield World(
                gateway=gateway.url,
                primary=primary,
                primary_url=primary.url,
                secondary_url=secondary.url,
                broker=broker,
                service_id=cat.service_id,
                space_a=provision_and_bind(broker, AUTH, cat.service_id, cat.space_plan_id, "org-1", "space-a"),
                org_2=provision_and_bind(broker, AUTH, cat.service_id, cat.org_plan_id, "org-2", "space-b"),
                space_b=provision_and_bind(broker, AUTH, cat.service_id, cat.space_plan_id, "org-2", "space-b"),
                gateway_log=gateway.log_path,
            )


def _services(body: dict[str, Any]) -> set[str]:
    """The service (target label) of every series in a query, series or targets answer."""
    key = "cf_service_instance_guid"
    data = body["data"]
    if isinstance(data, dict) and "result" in data:
        return {r["metric"].get(key, "?") for r in data["result"]}
    if isinstance(data, dict) and "activeTargets" in data:
        return {t["labels"][key] for t in data["activeTargets"]}
    return {s.get(key, "?") for s in data}


def _get(world: World, creds: Creds, path: str, **params: Any) -> dict[str, Any]:
    resp = requests.get(world.gateway + path, params=params, auth=creds.auth, timeout=30)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


VISIBLE = {"space_a": {"svc-a"}, "org_2": {"svc-b", "svc-c"}, "space_b": {"svc-b"}}


@pytest.mark.parametrize("who", sorted(VISIBLE))
def test_each_tenant_sees_exactly_its_own_series(world: World, who: str) -> None:
    creds: Creds = getattr(world, who)
    want = VISIBLE[who]
    now = time.time()
    assert _services(_get(world, creds, "/api/v1/query", query="cpu_usage_idle")) == want
    assert _services(_get(world, creds, "/api/v1/query", query='{__name__=~".+"}')) == want
    assert _services(_get(world, creds, "/api/v1/query_range", query="rate(net_bytes_recv[5s])",
                          start=now - 30, end=now, step=2)) == want
    assert _services(_get(world, creds, "/api/v1/series", **{"match[]": "cpu_usage_idle"})) == want
    assert _services(_get(world, creds, "/api/v1/series")) == want
    assert set(_get(world, creds, "/api/v1/label/service/values")["data"]) == want
    assert _services(_get(world, creds, "/api/v1/targets")) == want
    labels = _get(world, creds, "/api/v1/labels")["data"]
    assert "cf_space_guid" in labels and "service" in labels
    names = _get(world, creds, "/api/v1/label/__name__/values")["data"]
    assert "cpu_usage_idle" in names and "up" in names
    meta = _get(world, creds, "/api/v1/metadata")["data"]
    assert set(meta) <= set(names) and "system_uptime" in meta
    assert _get(world, creds, "/api/v1/status/buildinfo")["data"]["version"].startswith("2.")


def test_grafana_style_post_requests(world: World) -> None:
    now = time.time()
    resp = requests.post(world.gateway + "/api/v1/query_range", auth=world.space_a.auth, data={
        "query": "sum by (cf_service_instance_guid) (rate(diskio_reads[10s]))", "start": now - 60, "end": now, "step": 5,
    }, headers={"Accept-Encoding": "gzip"})
    assert resp.status_code == 200
    assert _services(resp.json()) == {"svc-a"}
    resp = requests.post(world.gateway + "/api/v1/labels", auth=world.org_2.auth,
                         data={"match[]": "cpu_usage_idle", "start": now - 60, "end": now})
    assert resp.status_code == 200 and "service" in resp.json()["data"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool ships with prometheus")
def test_promtool_through_the_gateway(world: World) -> None:
    c = world.space_a
    base = world.gateway.replace("http://", f"http://{c.username}:{c.password}@")

    def promtool(*args: str) -> str:
        proc = subprocess.run(["promtool", "query", *args], capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    out = promtool("instant", base, "cpu_usage_idle")
    assert "svc-a" in out and "svc-b" not in out and "svc-c" not in out
    now = int(time.time())
    out = promtool("range", f"--start={now - 30}", f"--end={now}", "--step=5s", base, "system_load1")
    assert "svc-a" in out and "svc-b" not in out
    out = promtool("series", "--match=up", base)
    assert "svc-a" in out and "svc-b" not in out and "svc-c" not in out
    out = promtool("labels", base, "cf_space_guid")
    assert out.split() == ["space-a"]


# Queries a tenant of svc-a might try in order to see svc-b/svc-c. Each must fail or
# return only svc-a's data; the other services' names must never appear.
TRICKS = [
    'up{cf_space_guid="space-b"}',
    'up{cf_space_guid!="space-a"}',
    'up{cf_space_guid=~".*"}',
    'up{cf_space_guid=~"space-.*"}',
    'up{cf_space_guid=~"space-a|space-b"}',
    'up{cf_space_guid!~"space-a"}',
    'up{cf_organization_guid="org-2"}',
    'up{service="svc-b"}',
    '{cf_space_guid="space-b"}',
    '{__name__=~".+",cf_space_guid="space-b"}',
    '{__name__="up" or cf_space_guid="space-b"}',
    'up{cf_space_guid="space-a"} or up{cf_space_guid="space-b"}',
    'up or on() vector(1)',
    'sum by (service) (up)',
    'count by (cf_space_guid, service) ({__name__=~".+"})',
    'label_replace(up, "cf_space_guid", "space-b", "", "")',
    'absent(up{cf_space_guid="space-b"})',
    'max_over_time(up{cf_space_guid="space-b"}[1m])',
    'max_over_time(up{cf_space_guid="space-b"}[1m:1s])',
    'up offset 1s',
    'up @ end()',
    'up{cf_space_guid="space-a\\"} or up{cf_space_guid=\\"space-b"}',
    "up{cf_space_guid='space-b'}",
    'up{cf_space_guid="space-a",cf_space_guid="space-b"}',
    'up{CF_SPACE_GUID="space-b"}',
    'up # {cf_space_guid="space-b"}',
    'topk(10, {__name__=~"cpu.*"})',
    'group by (service) ({service=~"svc-.*"})',
    'up and on(job) up{cf_space_guid="space-b"}',
    'sort_desc(sum by (service) (rate(net_bytes_recv[10s])))',
    'up # comment\r or up{cf_space_guid="space-b"}',
    'up # comment\n or {cf_space_guid="space-b"}',
]


@pytest.mark.parametrize("query", TRICKS)
def test_tricks_never_cross_tenants(world: World, query: str) -> None:
    for method in ("GET", "POST"):
        kw: dict[str, Any] = {"params": {"query": query}} if method == "GET" else {"data": {"query": query}}
        resp = requests.request(method, world.gateway + "/api/v1/query", auth=world.space_a.auth, timeout=30, **kw)
        assert resp.status_code in (200, 400, 422), resp.text
        assert "svc-b" not in resp.text and "svc-c" not in resp.text
        if resp.status_code == 200 and resp.json()["data"]["resultType"] == "vector":
            assert _services(resp.json()) <= {"svc-a", "?"}


MATCH_TRICKS = ['{cf_space_guid="space-b"}', '{service=~".+"}', '{__name__=~".+"}', 'up{cf_space_guid!="space-a"}',
                '{cf_organization_guid="org-2"}', '{service="svc-b" or service="svc-c"}']


@pytest.mark.parametrize("selector", MATCH_TRICKS)
@pytest.mark.parametrize("path", ["/api/v1/series", "/api/v1/labels", "/api/v1/label/service/values", "/federate"])
def test_match_tricks_never_cross_tenants(world: World, selector: str, path: str) -> None:
    resp = requests.get(world.gateway + path, params={"match[]": selector}, auth=world.space_a.auth, timeout=30)
    assert resp.status_code in (200, 400), resp.text
    assert "svc-b" not in resp.text and "svc-c" not in resp.text


@pytest.mark.parametrize(
    "query",
    [
        "x # c\r" + "+x" * 8000,  # crashed gunicorn workers before the pre-scan counted comments
        "(" * 5000 + "x" + ")" * 5000,
        "-" * 16000 + "x",
        "x @ -1",  # promql-parser panics reading a pre-1970 timestamp
    ],
)
def test_parser_crashers_are_400_and_the_gateway_stays_up(world: World, query: str) -> None:
    for _ in range(3):  # more than one worker
        resp = requests.post(world.gateway + "/api/v1/query", data={"query": query}, auth=world.space_a.auth, timeout=30)
        assert resp.status_code == 400, resp.text[:200]
        assert resp.json()["errorType"] == "bad_data"
    assert _services(_get(world, world.space_a, "/api/v1/query", query="up")) == {"svc-a"}
    log = world.gateway_log.read_text(errors="replace")
    assert "SIGSEGV" not in log and "was sent" not in log and "exited with code" not in log


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/v1/status/config"), ("GET", "/api/v1/status/flags"), ("GET", "/api/v1/status/tsdb"),
     ("POST", "/api/v1/admin/tsdb/snapshot"), ("POST", "/api/v1/admin/tsdb/delete_series?match[]=up"),
     ("POST", "/api/v1/read"), ("POST", "/api/v1/write"), ("POST", "/-/quit"), ("POST", "/-/reload")],
)
def test_refused_paths(world: World, method: str, path: str) -> None:
    resp = requests.request(method, world.gateway + path, auth=world.space_a.auth, timeout=30)
    assert resp.status_code in (403, 404)
    assert resp.json()["status"] == "error"
    assert "svc-b" not in resp.text


def test_client_tenancy_headers_are_ignored(world: World) -> None:
    resp = requests.get(world.gateway + "/api/v1/query", params={"query": "up"}, auth=world.space_a.auth,
                        headers={"X-Scope-OrgID": "org-2", "X-Prometheus-Remote-Read-Version": "1"})
    assert _services(resp.json()) == {"svc-a"}


def test_unauthenticated_and_wrong_tenant_password(world: World) -> None:
    resp = requests.get(world.gateway + "/api/v1/query", params={"query": "up"})
    assert resp.status_code == 401 and "WWW-Authenticate" in resp.headers
    resp = requests.get(world.gateway + "/api/v1/query", params={"query": "up"},
                        auth=(world.space_a.username, world.org_2.password))
    assert resp.status_code == 401


def test_unbind_cuts_access_within_a_second(world: World) -> None:
    c = provision_and_bind(world.broker, AUTH, world.service_id, world.space_b.plan_id, "org-1", "space-a")
    url = world.gateway + "/api/v1/query"
    # Warm every worker's cache: several requests over keep-alive and fresh connections.
    for _ in range(6):
        assert requests.get(url, params={"query": "up"}, auth=c.auth, timeout=10).status_code == 200
    resp = osb(world.broker, AUTH, "DELETE", f"/v2/service_instances/{c.instance_id}/service_bindings/{c.binding_id}",
                params={"service_id": world.service_id, "plan_id": c.plan_id})
    assert resp.status_code == 200, resp.text
    unbound = time.monotonic()
    time.sleep(1.05)
    for _ in range(6):  # each request may land on any worker
        assert requests.get(url, params={"query": "up"}, auth=c.auth, timeout=10).status_code == 401
    assert time.monotonic() - unbound < 3


def test_zz_stopping_the_primary_fails_over(world: World) -> None:
    """Runs last in this module: it stops the primary Prometheus."""
    before = _get(world, world.org_2, "/api/v1/query", query="up")
    assert _services(before) == {"svc-b", "svc-c"}
    world.primary.stop()
    for _ in range(10):
        after = _get(world, world.org_2, "/api/v1/query", query="up")
        assert _services(after) == {"svc-b", "svc-c"}
    metrics = requests.get(world.gateway + "/metrics", timeout=10).text
    assert "tenant_metrics_gateway_failovers_total" in metrics
