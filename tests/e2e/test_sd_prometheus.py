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
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tenant_metrics.core import db
from tenant_metrics.fakes import exporter
from tenant_metrics.fakes.aiven import FakeAiven
from tenant_metrics.fakes.cloudcontroller import FakeCloudController
from tests.sd.conftest import ENDPOINT, Harness
from tests.support import free_port, wait_http

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
NODE_ADDRESSES = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]


def _port_free_on_all(addresses: list[str]) -> int:
    for _ in range(50):
        port = free_port()
        try:
            for addr in addresses:
                with socket.socket() as s:
                    s.bind((addr, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free on every loopback address")


def _wait_for(check: Callable[[], Any], timeout: float = 45.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Harness]:
    url = f"sqlite:///{tmp_path / 'sd.sqlite3'}"
    db.upgrade(url)
    with (
        FakeAiven(project="tm-e2e", token="aiven-test-token") as aiven,
        FakeCloudController() as cc,
    ):
        aiven.add_endpoint(ENDPOINT, "platform-prometheus", "prom-scraper", "scrape-secret-123")  # type: ignore[attr-defined]
        h = Harness(url, aiven, cc, tmp_path)  # type: ignore[arg-type]
        try:
            yield h
        finally:
            h.close()


def _query(base: str, promql: str) -> list[dict[str, Any]]:
    resp = requests.get(base + "/api/v1/query", params={"query": promql}, timeout=10)
    resp.raise_for_status()
    return list(resp.json()["data"]["result"])


def test_prometheus_scrapes_sd_targets_with_owner_labels(
    world: Harness, prometheus_binary: str, tmp_path: Path
) -> None:
    h = world
    cert, key = exporter.self_signed_cert(tmp_path / "tls", "aivencloud.test")
    h.aiven.ca_certificate = Path(cert).read_text()  # type: ignore[attr-defined]
    scrape_port = _port_free_on_all(NODE_ADDRESSES)
    a = h.tenant(name="orders-search", org="dept-a", space="prod", node_count=2)
    b = h.tenant(name="logs", org="dept-b", space="staging", node_count=1, integrated=True)
    hidden = h.tenant(name="nobody", in_cc=False, tags=False, node_count=1, integrated=True)
    layout = {
        a.aiven_name: NODE_ADDRESSES[0:2],
        b.aiven_name: [NODE_ADDRESSES[2]],
        hidden.aiven_name: [NODE_ADDRESSES[3]],
    }
    nodes = []
    for name, addresses in layout.items():
        h.resolver.table[h.aiven.host_of(name)] = addresses
        for i, addr in enumerate(addresses, start=1):
            # b's exporter tries to claim a's organisation; honor_labels false must defuse it.
            spoof = {"cf_organization_guid": a.org_guid} if name == b.aiven_name else None
            nodes.append(
                exporter.start(
                    addr,
                    scrape_port,
                    service=name,
                    node=f"{name}-{i}",
                    project="tm-e2e",
                    username="prom-scraper",
                    password="scrape-secret-123",
                    tls=(cert, key),
                    extra_labels=spoof,
                )
            )
    prom: subprocess.Popen[bytes] | None = None
    try:
        app = h.app(SD_SCRAPE_PORT=str(scrape_port))
        report = app.discovery.run_cycle()
        assert report.ok, report.failures
        assert len(h.aiven.integrations_for(a.aiven_name, ENDPOINT)) == 1  # created by sd

        printed = subprocess.run(
            [sys.executable, "-m", "tenant_metrics", "sd", "prometheus-config"],
            cwd=ROOT,
            env={"PATH": os.environ["PATH"], **h.env, "SD_SCRAPE_PORT": str(scrape_port)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert printed.returncode == 0, printed.stderr
        job = yaml.safe_load(printed.stdout)["scrape_configs"][0]
        job.update(scrape_interval="1s", scrape_timeout="1s")
        job["file_sd_configs"][0]["refresh_interval"] = "1s"
        config = tmp_path / "prometheus.yml"
        config.write_text(
            yaml.safe_dump({"global": {"scrape_interval": "1s"}, "scrape_configs": [job]})
        )

        web = f"127.0.0.1:{free_port()}"
        base = f"http://{web}"
        prom = subprocess.Popen(
            [
                prometheus_binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address={web}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_http(base + "/-/ready", timeout=60)

        def all_up() -> list[dict[str, Any]] | None:
            result = _query(base, "up == 1")
            return result if len(result) == 3 else None

        def three_series() -> list[dict[str, Any]] | None:
            result = _query(base, "system_load1")
            return result if len(result) == 3 else None

        up = _wait_for(all_up, what="3 targets up")
        assert {r["metric"]["instance"] for r in up} == {
            f"{ip}:{scrape_port}" for ip in NODE_ADDRESSES[:3]
        }

        series = _wait_for(three_series, what="system_load1 from 3 nodes")
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
        _wait_for(lambda: len(_query(base, "up")) == 2 or None, what="b's target to go")
        targets = requests.get(base + "/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        assert {t["labels"]["aiven_service_name"] for t in targets} == {a.aiven_name}
        assert (
            json.loads(h.targets_file.read_text())[0]["labels"]["aiven_service_name"]
            == a.aiven_name
        )
        assert all(n.scrapes > 0 for n in nodes[:3]) and nodes[3].scrapes == 0
    finally:
        if prom is not None:
            prom.terminate()
            try:
                prom.wait(timeout=20)
            except subprocess.TimeoutExpired:
                prom.kill()
                prom.wait()
            if prom.stderr is not None:
                prom.stderr.close()
        for node in nodes:
            node.stop()
