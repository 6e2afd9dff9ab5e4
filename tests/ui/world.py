"""A small world for the tenant-experience tests: Aiven-like nodes, a real Prometheus, tenants.

Two tenants own Aiven services whose nodes speak like Aiven's Telegraf exporter
(``fakes.exporter.render_metrics``). Prometheus scrapes them through a file_sd file with
the target labels sd writes (DESIGN.md), and tenants get credentials as rows made with
``tenant_metrics.core.models`` and ``tenant_metrics.core.credentials``, exactly what the broker stores.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tenant_metrics.fakes.exporter import RunningExporter
from tenant_metrics.rules import render_rules
from tenant_metrics.world import (
    TenantCreds,
    address,
    free_port,
    running_exporters,
    start_prometheus,
    wait_until,
)
from tenant_metrics.world import add_tenant as add_tenant_rows
from tenant_metrics.world import revoke as revoke  # noqa: PLC0414 - the tests import it from here

Credentials = TenantCreds


@dataclass(frozen=True, slots=True)
class Service:
    """A tenant's Aiven service as sd would label it."""

    instance_name: str
    service_type: str
    org_guid: str
    org_name: str
    space_guid: str
    space_name: str
    nodes: int = 1
    down_nodes: int = 0  # targets whose node does not answer (health "down")
    instance_guid: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def aiven_name(self) -> str:
        return f"prod-{self.instance_guid}"

    def labels(self) -> dict[str, str]:
        return {
            "cf_organization_guid": self.org_guid,
            "cf_space_guid": self.space_guid,
            "cf_service_instance_guid": self.instance_guid,
            "cf_organization_name": self.org_name,
            "cf_space_name": self.space_name,
            "cf_service_instance_name": self.instance_name,
            "aiven_service_name": self.aiven_name,
            "aiven_service_type": self.service_type,
            "aiven_plan": "business-4",
            "aiven_cloud": "aws-eu-west-2",
        }


ORG_A, ORG_B = "0a000000-0000-4000-8000-00000000000a", "0b000000-0000-4000-8000-00000000000b"
SPACE_A1, SPACE_A2 = "5a100000-0000-4000-8000-0000000000a1", "5a200000-0000-4000-8000-0000000000a2"
SPACE_B1, SPACE_B2 = "5b100000-0000-4000-8000-0000000000b1", "5b200000-0000-4000-8000-0000000000b2"

XSS_NAME = "<img src=x onerror=window.tmXss=1>"

# The shipped rules, evaluated every second with every `for` cut to 1/100 (a red cluster
# fires after 3 s instead of 5 min), so the page's alerts and the recording-rule series
# the capacity cards and dashboards read exist within a test's time.
RULES_FOR_SCALE = 0.01
RECORDED = ("aiven_service:disk_used_percent:max", "aiven_service:disk_days_until_full:min",
            "aiven_service:jvm_heap_used_percent:max")

# Tenant A holds a *space* plan in space-a1; tenant B an *org* plan for org-b.
SERVICES = (
    Service("search-a", "opensearch", ORG_A, "org-a", SPACE_A1, "space-a1", nodes=2),
    Service("legacy-a", "elasticsearch", ORG_A, "org-a", SPACE_A1, "space-a1"),
    Service("search-a2", "opensearch", ORG_A, "org-a", SPACE_A2, "space-a2"),  # same org, other space
    Service("search-b", "opensearch", ORG_B, "org-b", SPACE_B1, "space-b1", nodes=2),
    Service("logs-b", "opensearch", ORG_B, "org-b", SPACE_B2, "space-b2", nodes=1, down_nodes=1),
    # Names are tenant input: markup in one must reach the page as text, never as markup.
    Service(XSS_NAME, "opensearch", ORG_B, "org-b", SPACE_B2, "space-b2"),
)


def visible(scope: str, value: str) -> list[Service]:
    """The services a tenant of ``scope`` ("space"/"org") with guid ``value`` may see."""
    key = "space_guid" if scope == "space" else "org_guid"
    return [s for s in SERVICES if getattr(s, key) == value]


def add_tenant(database_url: str, *, scope: str, org_guid: str, space_guid: str, name: str) -> Credentials:
    """A provisioned metrics instance and one service key, stored as the broker stores them."""
    return add_tenant_rows(database_url, scope, org_guid, space_guid, instance_name=name)


@dataclass(slots=True)
class World:
    prometheus_url: str
    nodes: list[RunningExporter]
    started: float = field(default_factory=time.monotonic)

    def wait_for_data(self, seconds: float) -> None:
        """Sleep until Prometheus holds at least ``seconds`` of scrapes."""
        time.sleep(max(0.0, self.started + seconds - time.monotonic()))


@contextmanager
def running_world(prometheus_binary: str, workdir: Path, extra_flags: tuple[str, ...] = ()) -> Iterator[World]:
    """Start every node and a Prometheus (1 s scrapes) that scrapes them; stop all after."""
    layout = {svc.aiven_name: ["127.0.0.1"] * svc.nodes for svc in SERVICES}
    types = {svc.aiven_name: {"service_type": svc.service_type} for svc in SERVICES}
    with running_exporters(layout, per_service=types, username=None) as nodes:
        by_service: dict[str, list[str]] = {}
        for node in nodes:
            by_service.setdefault(node.identity.service, []).append(address(node))
        groups = [{"targets": by_service.get(svc.aiven_name, [])
                   # nothing listens on a down node's address: its scrape fails
                   + [f"127.0.0.1:{free_port()}" for _ in range(svc.down_nodes)],
                   "labels": svc.labels()} for svc in SERVICES]
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "targets.json").write_text(json.dumps(groups))
        (workdir / "rules.yml").write_text(render_rules(for_scale=RULES_FOR_SCALE, interval="1s"))
        config = ("global: {scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s}\n"
                  f"rule_files: ['{workdir / 'rules.yml'}']\n"
                  "scrape_configs:\n"
                  "- job_name: aiven\n"
                  f"  file_sd_configs: [{{files: ['{workdir / 'targets.json'}'], refresh_interval: 1s}}]\n")
        prometheus = start_prometheus(workdir, config, binary=prometheus_binary, extra_flags=extra_flags, timeout=30)
        try:
            world = World(prometheus.url, nodes, started=time.monotonic())
            wait_until(lambda: _all_scraped(prometheus.url), timeout=30, what="every target scraped twice")
            wait_until(lambda: _all_recorded(prometheus.url), timeout=30, what="every capacity series recorded")
            yield world
        finally:
            prometheus.stop()


def _all_scraped(url: str) -> bool:
    # Two samples of a counter per live node: rate() has something to work with.
    resp = requests.get(f"{url}/api/v1/query", params={"query": "count_over_time(system_uptime[1m]) >= 3"}, timeout=5)
    live = sum(s.nodes for s in SERVICES)
    return resp.ok and len(resp.json()["data"]["result"]) == live


def _all_recorded(url: str) -> bool:
    # One series per service for each capacity rule (every service has a live node that is filling).
    for name in RECORDED:
        resp = requests.get(f"{url}/api/v1/query", params={"query": name}, timeout=5)
        if not resp.ok or len(resp.json()["data"]["result"]) != len(SERVICES):
            return False
    return True
