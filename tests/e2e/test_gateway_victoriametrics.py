"""The gateway in front of another Prometheus-compatible backend: VictoriaMetrics single-node.

Platforms that outgrow one Prometheus put Thanos Query, Mimir or VictoriaMetrics behind
the gateway (docs/scaling.md). This runs Debian's victoria-metrics, scraping loopback
exporters for two tenants, and checks that each tenant sees only its own series through
the gateway on gunicorn, with credentials issued by the real broker over HTTP.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry

from broker.app import create_app as create_broker
from broker.config import from_env as broker_from_env
from tenant_metrics.core import db
from tenant_metrics.world import (
    Target,
    address,
    children,
    free_port,
    provision_and_bind,
    running_exporters,
    serve_wsgi,
    spawn_ready,
    start_gateway,
    static_config,
    wait_for_series,
)

pytestmark = pytest.mark.e2e

BROKER_USER, BROKER_PASSWORD = "cloud-controller", "vm-e2e-broker-password-0123456789"
AUTH = (BROKER_USER, BROKER_PASSWORD)
OWNERS = {
    "svc-red": {"cf_organization_guid": "org-red", "cf_space_guid": "space-red"},
    "svc-blue": {"cf_organization_guid": "org-blue", "cf_space_guid": "space-blue"},
}


@dataclass
class VmWorld:
    gateway: str
    backend: str
    red: tuple[str, str]
    blue: tuple[str, str]


def _vm_binary() -> str:
    path = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
    if not Path(path).exists():
        pytest.fail("victoria-metrics not found: install Debian's 'victoria-metrics' package (make deps)")
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VmWorld]:
    work = tmp_path_factory.mktemp("vm-e2e")
    database_url = f"sqlite:///{work / 'tm.sqlite3'}"
    db.upgrade(database_url)
    with running_exporters({name: ["127.0.0.1"] for name in OWNERS}, username=None) as exporters, \
            children() as procs:
        scrape = static_config([Target(address(e), {**labels, "cf_service_instance_guid": name})
                                for e, (name, labels) in zip(exporters, OWNERS.items())])
        del scrape["global"]["evaluation_interval"]  # VictoriaMetrics parses strictly: scrape settings only
        (work / "scrape.yml").write_text(json.dumps(scrape))
        port = free_port()
        backend = procs.add(spawn_ready(
            "victoria-metrics",
            [_vm_binary(), f"-storageDataPath={work / 'vm-data'}", f"-httpListenAddr=127.0.0.1:{port}",
             f"-promscrape.config={work / 'scrape.yml'}", "-search.latencyOffset=0s", "-search.disableCache",
             "-loggerLevel=ERROR"],
            work / "vm.log", url=f"http://127.0.0.1:{port}", ready_path="/health")).url
        wait_for_series(backend, "cpu_usage_idle", 2)
        settings = broker_from_env({"BROKER_USERNAME": BROKER_USER, "BROKER_PASSWORD": BROKER_PASSWORD,
                                    "DATABASE_URL": database_url})
        broker_app = create_broker(settings, registry=CollectorRegistry(), configure_logging=False)
        with serve_wsgi(broker_app) as broker:
            cat = settings.catalog
            gateway = procs.add(start_gateway([backend], database_url, work / "gw")).url
            red = provision_and_bind(broker, AUTH, cat.service_id, cat.space_plan_id, "org-red", "space-red")
            blue = provision_and_bind(broker, AUTH, cat.service_id, cat.org_plan_id, "org-blue", "space-blue")
            yield VmWorld(gateway, backend, red=red.auth, blue=blue.auth)


def _owners(resp: requests.Response) -> set[str]:
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    rows = data["result"] if isinstance(data, dict) else data
    return {(r.get("metric", r)).get("cf_service_instance_guid", "?") for r in rows}


@pytest.mark.parametrize("who, mine", [("red", "svc-red"), ("blue", "svc-blue")])
def test_each_tenant_sees_only_its_own_series(world: VmWorld, who: str, mine: str) -> None:
    auth = getattr(world, who)
    g = world.gateway
    now = time.time()
    assert _owners(requests.get(g + "/api/v1/query", params={"query": "cpu_usage_idle"}, auth=auth, timeout=10)) == {mine}
    assert _owners(requests.get(g + "/api/v1/query_range", auth=auth, timeout=10, params={
        "query": "avg_over_time(cpu_usage_idle[10s])", "start": now - 60, "end": now, "step": 5})) == {mine}
    assert _owners(requests.post(g + "/api/v1/series", data={"match[]": "cpu_usage_idle", "start": now - 60},
                                 auth=auth, timeout=10)) == {mine}
    values = requests.get(g + "/api/v1/label/cf_service_instance_guid/values", auth=auth, timeout=10)
    assert values.status_code == 200 and values.json()["data"] == [mine]


def test_the_backend_itself_holds_both_tenants(world: VmWorld) -> None:
    """The isolation above is the gateway's doing: the backend answers everything."""
    raw = requests.get(world.backend + "/api/v1/query", params={"query": "cpu_usage_idle"}, timeout=10)
    assert _owners(raw) == set(OWNERS)


@pytest.mark.parametrize("query", [
    'cpu_usage_idle{cf_organization_guid="org-blue"}',
    'cpu_usage_idle{cf_service_instance_guid="svc-blue"}',
    '{__name__=~".+", cf_space_guid=~"space-.*"}',
    'cpu_usage_idle or on() vector(1)',
    'label_replace(cpu_usage_idle, "cf_space_guid", "space-blue", "", "")',
])
def test_red_cannot_reach_blue(world: VmWorld, query: str) -> None:
    resp = requests.get(world.gateway + "/api/v1/query", params={"query": query}, auth=world.red, timeout=10)
    if resp.status_code == 200:
        assert "svc-blue" not in resp.text
    else:
        assert resp.json()["status"] == "error"


def test_wrong_password_is_refused(world: VmWorld) -> None:
    resp = requests.get(world.gateway + "/api/v1/query", params={"query": "up"},
                        auth=(world.red[0], world.blue[1]), timeout=10)
    assert resp.status_code == 401
