"""End to end: a real Prometheus evaluates the shipped rules (``for`` shortened) against the
exporters of two tenants; through a real gateway (gunicorn), tenant A sees its own red
cluster alert in /api/v1/alerts and /api/v1/rules, and tenant B sees nothing of A's."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import yaml

from tenant_metrics.core import db
from tenant_metrics.core import labels as L
from tenant_metrics.fakes import exporter
from tenant_metrics.rules import parse_duration, render_rules
from tenant_metrics.world import (
    TenantCreds,
    add_tenant,
    children,
    start_gateway,
    start_prometheus,
    wait_for_series,
)

pytestmark = pytest.mark.e2e

EVAL_SECONDS = 1.0
FOR_SCALE = 1 / 150  # 5m -> 2s
SLACK_SECONDS = 1.5  # our polling (every 0.2s), the gateway hop and the HTTP round trips


def _owner(key: str, org: str, space: str) -> dict[str, str]:
    return {
        L.CF_ORGANIZATION_GUID: org, L.CF_SPACE_GUID: space, L.CF_SERVICE_INSTANCE_GUID: f"guid-{key}",
        L.CF_ORGANIZATION_NAME: f"{org}-name", L.CF_SPACE_NAME: f"{space}-name",
        L.CF_SERVICE_INSTANCE_NAME: f"{key}-search", L.AIVEN_SERVICE_NAME: f"tm-{key}",
        L.AIVEN_SERVICE_TYPE: "opensearch", L.AIVEN_PLAN: "business-4", L.AIVEN_CLOUD: "aws-eu-west-2",
    }


# A: space plan on space-a (org-1). B: org plan on org-2.
OWNERS = {"a": _owner("a", "org-1", "space-a"), "b": _owner("b", "org-2", "space-b")}
SHIPPED_ALERTS = {
    rule["alert"] for group in yaml.safe_load(render_rules())["groups"] for rule in group["rules"] if "alert" in rule
}


@dataclass
class World:
    prometheus: str
    gateway: str
    tenants: dict[str, TenantCreds]
    exporters: dict[str, exporter.RunningExporter]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, prometheus_binary: str) -> Iterator[World]:
    work = tmp_path_factory.mktemp("alerts-e2e")
    database_url = f"sqlite:///{work / 'tm.sqlite3'}"
    db.upgrade(database_url)
    tenants = {
        "a": add_tenant(database_url, "space", "org-1", "space-a"),
        "b": add_tenant(database_url, "org", "org-2", "space-b"),
    }
    running = {key: exporter.start("127.0.0.1", 0, service=f"tm-{key}", username=None) for key in OWNERS}
    try:
        with children() as started:
            rules = work / "rules.yml"
            rules.write_text(render_rules(for_scale=FOR_SCALE, interval=f"{EVAL_SECONDS:g}s"))
            config = {
                "global": {"scrape_interval": "1s", "evaluation_interval": f"{EVAL_SECONDS:g}s"},
                "rule_files": [str(rules)],
                "scrape_configs": [{
                    "job_name": "aiven", "honor_labels": False, "scrape_timeout": "1s",
                    "static_configs": [{"targets": [f"{e.host}:{e.port}"], "labels": OWNERS[key]}
                                       for key, e in running.items()],
                }],
            }
            prometheus = started.add(start_prometheus(work / "prometheus", config, binary=prometheus_binary)).url
            wait_for_series(prometheus, "up == 1", 2)
            gateway = started.add(start_gateway([prometheus], database_url, work / "gw")).url
            yield World(prometheus, gateway, tenants, running)
    finally:
        for running_exporter in running.values():
            running_exporter.stop()


def _data(world: World, tenant: str, path: str, **params: str) -> Any:
    resp = requests.get(world.gateway + path, params=params, auth=world.tenants[tenant].auth, timeout=10)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "success"
    return body["data"]


def _direct(world: World, path: str, **params: str) -> Any:
    resp = requests.get(world.prometheus + path, params=params, timeout=10)
    resp.raise_for_status()
    return resp.json()["data"]


def _wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def _rules(data: Any) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for g in data["groups"] for r in g["rules"]}


def test_a_red_cluster_shows_to_its_tenant_only(world: World) -> None:
    # The rules are loaded and evaluated: every shipped alert is audience: tenant, so each
    # tenant sees each of them, inactive and without instances, and no recording rule.
    _wait_for(lambda: all(g.get("lastEvaluation", "").startswith("2") and not g["lastEvaluation"].startswith("0001")
                          for g in _direct(world, "/api/v1/rules")["groups"]), 30, "a first evaluation")
    time.sleep(3 * EVAL_SECONDS)
    for tenant in ("a", "b"):
        rules = _rules(_data(world, tenant, "/api/v1/rules"))
        assert set(rules) == SHIPPED_ALERTS
        assert {(r["state"], len(r["alerts"]), r["type"]) for r in rules.values()} == {("inactive", 0, "alerting")}
        assert _data(world, tenant, "/api/v1/alerts") == {"alerts": []}

    world.exporters["a"].knobs.status_code = 3
    red_query = 'max(opensearch_cluster_health_status_code{cf_space_guid="space-a"}) == 3'
    _wait_for(lambda: _direct(world, "/api/v1/query", query=red_query)["result"], 30, "the red sample")
    seen_red = time.monotonic()
    bound = parse_duration("5m") * FOR_SCALE / 1000 + 2 * EVAL_SECONDS + SLACK_SECONDS

    def firing() -> list[dict[str, Any]]:
        return [a for a in _data(world, "a", "/api/v1/alerts")["alerts"] if a["state"] == "firing"]

    fired = _wait_for(firing, bound, f"A's red alert through the gateway within {bound:.1f}s")
    took = time.monotonic() - seen_red
    print(f"red alert firing through the gateway {took:.2f}s after Prometheus had the red sample (bound {bound:.1f}s)")
    assert took <= bound
    assert [a["labels"] for a in fired] == [{"alertname": "AivenSearchClusterRed", "audience": "tenant",
                                            "severity": "critical", **OWNERS["a"]}]
    assert fired[0]["annotations"]["summary"] == "a-search: search cluster is red"
    assert set(fired[0]) == {"labels", "annotations", "state", "activeAt", "value"}

    # /api/v1/rules: the same instance, the rule firing, in Prometheus's shape.
    a_rules = _data(world, "a", "/api/v1/rules")
    red = _rules(a_rules)["AivenSearchClusterRed"]
    assert red["state"] == "firing"
    assert [(x["labels"]["cf_space_guid"], x["state"]) for x in red["alerts"]] == [("space-a", "firing")]
    direct = _direct(world, "/api/v1/rules", type="alert")
    direct_group = next(g for g in direct["groups"] if g["name"] == "aiven-search-alerts")
    group = next(g for g in a_rules["groups"] if g["name"] == "aiven-search-alerts")
    assert set(group) == set(direct_group) and group["file"] == direct_group["file"]
    direct_red = _rules(direct)["AivenSearchClusterRed"]
    assert set(red) == set(direct_red) - {"lastError"}
    assert (red["query"], red["duration"], red["labels"]) == (direct_red["query"], direct_red["duration"],
                                                              direct_red["labels"])
    assert _rules(_data(world, "a", "/api/v1/rules", exclude_alerts="true"))["AivenSearchClusterRed"].keys() == (
        red.keys() - {"alerts"})

    # B sees nothing of A's: no alert, no instance, the red rule inactive, no A label anywhere.
    assert _data(world, "b", "/api/v1/alerts") == {"alerts": []}
    b_rules = _data(world, "b", "/api/v1/rules")
    assert _rules(b_rules)["AivenSearchClusterRed"]["state"] == "inactive"
    assert all(r["alerts"] == [] for r in _rules(b_rules).values())
    for probe in ({}, {"rule_name[]": "AivenSearchClusterRed"}, {"type": "alert"}, {"type": "record"}):
        text = json.dumps([_data(world, "b", "/api/v1/rules", **probe), _data(world, "b", "/api/v1/alerts")])
        assert not any(value in text for value in ("space-a", "org-1", "guid-a", "tm-a", "a-search"))


def test_a_filling_disk_warns_its_tenant_only(world: World) -> None:
    """B's disk fills on a steep slope: predict_linear over disk_free says full within four
    days, and the alert reaches B alone, within its `for` plus two evaluations."""
    world.exporters["b"].knobs.disk_free_bytes_per_second = -1e9  # 60 GB free: gone in a minute
    falling = 'predict_linear(disk_free{cf_organization_guid="org-2"}[6h], 4 * 86400) < 0'
    _wait_for(lambda: _direct(world, "/api/v1/query", query=falling)["result"], 30, "a falling disk_free")
    seen = time.monotonic()
    bound = parse_duration("1h") * FOR_SCALE / 1000 + 2 * EVAL_SECONDS + SLACK_SECONDS

    def disk_alerts(tenant: str) -> list[dict[str, Any]]:
        return [a for a in _data(world, tenant, "/api/v1/alerts")["alerts"]
                if a["labels"]["alertname"] == "AivenSearchDiskFullInFourDays" and a["state"] == "firing"]

    fired = _wait_for(lambda: disk_alerts("b"), bound, f"B's disk-full alert within {bound:.1f}s")
    assert time.monotonic() - seen <= bound
    assert [a["labels"]["cf_service_instance_guid"] for a in fired] == ["guid-b"]
    assert {k: fired[0]["labels"][k] for k in OWNERS["b"]} == OWNERS["b"]
    assert disk_alerts("a") == []
    text = json.dumps([_data(world, "a", "/api/v1/alerts"), _data(world, "a", "/api/v1/rules")])
    assert not any(value in text for value in ("space-b", "org-2", "guid-b", "tm-b", "b-search"))
