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
from pathlib import Path
from typing import Any

import pytest
import requests

from tenant_metrics.world import (
    FakeApis,
    children,
    free_port,
    running_exporters,
    sd_config,
    start_prometheus,
    wait_until,
)
from tests.e2e.conftest import query
from tests.sd.conftest import ENDPOINT, Harness

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
NODE_ADDRESSES = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]


def test_prometheus_scrapes_sd_targets_with_owner_labels(
    sd_world: tuple[Harness, FakeApis], prometheus_binary: str, tmp_path: Path
) -> None:
    h, apis = sd_world
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
            result = query(base, "up == 1")
            return result if len(result) == 3 else None

        def three_series() -> list[dict[str, Any]] | None:
            result = query(base, "system_load1")
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
        scoped = query(base, f'system_load1{{cf_organization_guid="{a.org_guid}"}}')
        assert {s["metric"]["aiven_service_name"] for s in scoped} == {a.aiven_name}
        assert len(scoped) == 2
        assert query(base, f'system_load1{{service="{hidden.aiven_name}"}}') == []

        # A service deleted in Aiven drops out of Prometheus (atomic rename seen by file_sd).
        h.aiven.delete_service(b.aiven_name)
        assert app.discovery.run_cycle().ok
        wait_until(lambda: len(query(base, "up")) == 2 or None, 45, what="b's target to go")
        targets = requests.get(base + "/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        assert {t["labels"]["aiven_service_name"] for t in targets} == {a.aiven_name}
        assert (
            json.loads(h.targets_file.read_text())[0]["labels"]["aiven_service_name"]
            == a.aiven_name
        )
        assert all(n.scrapes > 0 for n in nodes[:3]) and nodes[3].scrapes == 0
