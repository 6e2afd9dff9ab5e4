"""End to end: a real Prometheus reads sd's file_sd output and scrapes Aiven-like exporters.

Fake Aiven and Cloud Controller on loopback; sd (its own wiring) integrates and writes the
targets; the scrape job is the one ``tenant-metrics sd prometheus-config`` prints (HTTPS,
basic auth, CA file, insecure_skip_verify, honor_labels false); exporters on 127.0.0.x
stand in for the Aiven nodes (the DNS seam maps each service hostname to its nodes and
SD_SCRAPE_PORT points at their port). The owner labels are then read back from
Prometheus's HTTP API.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tenant_metrics.core import db
from tenant_metrics.world import (
    FakeApis,
    children,
    free_port,
    running_exporters,
    running_fake_apis,
    sd_config,
    start_prometheus,
    wait_until,
)
from tests.sd.conftest import ENDPOINT, Harness

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
NODE_ADDRESSES = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Harness, FakeApis]]:
    url = f"sqlite:///{tmp_path / 'sd.sqlite3'}"
    db.upgrade(url)
    with running_fake_apis(tmp_path / "tls", project="tm-e2e", token="aiven-test-token", endpoint_id=ENDPOINT,
                           scrape_user="prom-scraper", scrape_password="scrape-secret-123") as apis:
        h = Harness(url, apis.aiven, apis.cc, tmp_path)
        try:
            yield h, apis
        finally:
            h.close()


def _query(base: str, promql: str) -> list[dict[str, Any]]:
    resp = requests.get(base + "/api/v1/query", params={"query": promql}, timeout=10)
    resp.raise_for_status()
    return list(resp.json()["data"]["result"])


def test_prometheus_scrapes_sd_targets_with_owner_labels(
    world: tuple[Harness, FakeApis], prometheus_binary: str, tmp_path: Path
) -> None:
    h, apis = world
    scrape_port = free_port(NODE_ADDRESSES)
    a = h.tenant(name="orders-search", org="dept-a", space="prod", node_count=2)
    b = h.tenant(name="logs", org="dept-b", space="staging", node_count=1, integrated=True)
    hidden = h.tenant(name="nobody", in_cc=False, tags=False, node_count=1, integrated=True)
    layout = {
        a.aiven_name: NODE_ADDRESSES[0:2],
        b.aiven_name: [NODE_ADDRESSES[2]],
        hidden.aiven_name: [NODE_ADDRESSES[3]],
    }
    for name, addresses in layout.items():
        h.resolver.table[h.aiven.host_of(name)] = addresses
    # b's exporter tries to claim a's organisation; honor_labels false must defuse it.
    spoof = {b.aiven_name: {"extra_labels": {"cf_organization_guid": a.org_guid}}}
    with (
        running_exporters(layout, scrape_port, per_service=spoof, project="tm-e2e", username="prom-scraper",
                          password="scrape-secret-123", tls=(apis.cert, apis.key)) as nodes,
        children() as procs,
    ):
        app = h.app(SD_SCRAPE_PORT=str(scrape_port))
        report = app.discovery.run_cycle()
        assert report.ok, report.failures
        assert len(h.aiven.integrations_for(a.aiven_name, ENDPOINT)) == 1  # created by sd

        config = sd_config({"PATH": os.environ["PATH"], **h.env, "SD_SCRAPE_PORT": str(scrape_port)}, ROOT)
        base = procs.add(start_prometheus(tmp_path / "prometheus", config, binary=prometheus_binary)).url

        def all_up() -> list[dict[str, Any]] | None:
            result = _query(base, "up == 1")
            return result if len(result) == 3 else None

        def three_series() -> list[dict[str, Any]] | None:
            result = _query(base, "system_load1")
            return result if len(result) == 3 else None

        up = wait_until(all_up, 45, what="3 targets up")
        assert {r["metric"]["instance"] for r in up} == {
            f"{ip}:{scrape_port}" for ip in NODE_ADDRESSES[:3]
        }

        series = wait_until(three_series, 45, what="system_load1 from 3 nodes")
        owners = {
            a.aiven_name: (a, "dept-a", "prod", "orders-search"),
            b.aiven_name: (b, "dept-b", "staging", "logs"),
        }
        for s in series:
            m = s["metric"]
            t, org, space, instance = owners[m["aiven_service_name"]]
            assert m["cf_organization_guid"] == t.org_guid
            assert m["cf_space_guid"] == t.space_guid
            assert m["cf_service_instance_guid"] == t.guid
            assert (
                m["cf_organization_name"],
                m["cf_space_name"],
                m["cf_service_instance_name"],
            ) == (org, space, instance)
            assert (m["aiven_service_type"], m["aiven_plan"], m["aiven_cloud"]) == (
                "opensearch",
                "business-4",
                "aws-eu-west-2",
            )
            assert m["service"] == m["aiven_service_name"] and m["host"].startswith(m["service"])
        # The spoofed label is kept only as exported_*: b's series still carry b's organisation.
        b_series = [
            s["metric"] for s in series if s["metric"]["aiven_service_name"] == b.aiven_name
        ]
        assert b_series[0]["cf_organization_guid"] == b.org_guid
        assert b_series[0]["exported_cf_organization_guid"] == a.org_guid
        # What a tenant's enforced selector would see: only its own services.
        scoped = _query(base, f'system_load1{{cf_organization_guid="{a.org_guid}"}}')
        assert {s["metric"]["aiven_service_name"] for s in scoped} == {a.aiven_name}
        assert len(scoped) == 2
        assert _query(base, f'system_load1{{service="{hidden.aiven_name}"}}') == []

        # A service deleted in Aiven drops out of Prometheus (atomic rename seen by file_sd).
        h.aiven.delete_service(b.aiven_name)
        assert app.discovery.run_cycle().ok
        wait_until(lambda: len(_query(base, "up")) == 2 or None, 45, what="b's target to go")
        targets = requests.get(base + "/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        assert {t["labels"]["aiven_service_name"] for t in targets} == {a.aiven_name}
        assert (
            json.loads(h.targets_file.read_text())[0]["labels"]["aiven_service_name"]
            == a.aiven_name
        )
        assert all(n.scrapes > 0 for n in nodes[:3]) and nodes[3].scrapes == 0
