"""Every dashboard expression, run through the real gateway against a real Prometheus, returns the tenant's data and only it."""

from __future__ import annotations

import re
import time
from pathlib import Path

import promql_parser
import pytest
import requests

from tenant_metrics.world import wait_until
from tests.ui.conftest import Tenants
from tests.ui.dashboards_util import dashboard_files, expressions, load, substitute
from tests.ui.world import ORG_B, SPACE_A1, Credentials, Service, visible

FILES = dashboard_files()
ALL = {"org": ".*", "space": ".*", "instance": ".*"}


def _type_of(path: Path) -> str:
    return load(path)["tags"][-1]  # "opensearch" / "elasticsearch" (see dashboards/build.py)


def _get(base: str, who: Credentials, path: str, params: list[tuple[str, str]]) -> dict:
    resp = requests.get(f"{base}{path}", params=params, auth=(who.username, who.password), timeout=30)
    assert resp.status_code == 200, f"{path} {params}: {resp.status_code} {resp.text[:300]}"
    body = resp.json()
    assert body["status"] == "success"
    return body["data"]


def _check_dashboard(base: str, who: Credentials, own: list[Service], path: Path) -> None:
    kind = _type_of(path)
    mine = [s for s in own if s.service_type == kind]
    names = {s.instance_name for s in mine}
    now = time.time()
    for e in expressions(load(path)):
        where = f"{path.name} {e.where}"
        if e.label is not None:
            # What Grafana asks for a label_values(selector, label) variable.
            values = _get(base, who, f"/api/v1/label/{e.label}/values",
                          [("match[]", substitute(e.expr, ALL)), ("start", str(now - 300)), ("end", str(now))])
            expected = {getattr(s, {"cf_organization_name": "org_name", "cf_space_name": "space_name",
                                    "cf_service_instance_name": "instance_name"}[e.label]) for s in mine}
            assert set(values) == expected, where
            continue
        result = _get(base, who, "/api/v1/query", [("query", substitute(e.expr, ALL)), ("time", str(now))])["result"]
        shown = {r["metric"].get("cf_service_instance_name") for r in result}
        if mine:
            assert result, f"{where}: no data for the tenant: {e.expr}"
            assert shown <= names, f"{where}: another tenant's series: {shown - names}"
        else:
            assert result == [], f"{where}: data although the tenant has no {kind} service: {shown}"


@pytest.mark.e2e
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_dashboard_through_the_gateway_for_each_tenant(gateway_url: str, tenants: Tenants, path: Path) -> None:
    _check_dashboard(gateway_url, tenants.a, visible("space", SPACE_A1), path)
    _check_dashboard(gateway_url, tenants.b, visible("org", ORG_B), path)


@pytest.mark.e2e
def test_choosing_one_instance_narrows_every_panel(gateway_url: str, tenants: Tenants) -> None:
    path = next(p for p in FILES if _type_of(p) == "opensearch")
    now = str(time.time())
    chosen = {"org": "org-b", "space": ".*", "instance": "search-b"}
    for e in expressions(load(path)):
        if e.label is not None:
            continue
        result = _get(gateway_url, tenants.b, "/api/v1/query", [("query", substitute(e.expr, chosen)), ("time", now)])
        assert result["result"], e.where
        assert {r["metric"].get("cf_service_instance_name") for r in result["result"]} == {"search-b"}, e.where


@pytest.mark.e2e
def test_a_panel_over_a_range_as_grafana_draws_it(gateway_url: str, tenants: Tenants) -> None:
    path = next(p for p in FILES if _type_of(p) == "opensearch")
    expr = next(e for e in expressions(load(path)) if "indices_search_query_total" in e.expr)
    end = time.time()
    data = _get(gateway_url, tenants.a, "/api/v1/query_range",
                [("query", substitute(expr.expr, ALL)), ("start", str(end - 60)), ("end", str(end)), ("step", "2")])
    assert {r["metric"]["cf_service_instance_name"] for r in data["result"]} == {"search-a"}
    assert all(float(v) > 0 for r in data["result"] for _, v in r["values"])


def _matches(label_filter: str, labels: dict[str, str]) -> bool:
    """Grafana's alert instance label filter (PromQL-style matchers) applied to one alert."""
    selector = promql_parser.parse(label_filter)
    for m in selector.matchers.matchers:
        value = labels.get(m.name, "")
        op = str(m.op).rsplit(".", 1)[-1]
        ok = {"Equal": value == m.value, "NotEqual": value != m.value,
              "Re": re.fullmatch(m.value, value) is not None,
              "NotRe": re.fullmatch(m.value, value) is None}[op]
        if not ok:
            return False
    return True


@pytest.mark.e2e
def test_the_alert_list_filter_picks_the_tenant_s_alerts_through_the_gateway(gateway_url: str, tenants: Tenants) -> None:
    """logs-b (tenant B) has a node that does not answer: the shipped rule fires (for x0.01)
    and each dashboard's alert list filter keeps it exactly when the type and instance fit."""
    def alerts() -> list[dict]:
        data = _get(gateway_url, tenants.b, "/api/v1/alerts", [])
        return [a for a in data["alerts"] if a["labels"]["alertname"] == "AivenSearchNodeNotScraped"
                and a["state"] == "firing"]

    firing = wait_until(alerts, timeout=30, what="logs-b's down node alert firing for tenant B")
    labels = firing[0]["labels"]
    assert labels["cf_service_instance_name"] == "logs-b"
    for path in FILES:
        (panel,) = [p for p in load(path)["panels"] if p["type"] == "alertlist"]
        flt = panel["options"]["alertInstanceLabelFilter"]
        fits = _type_of(path) == labels["aiven_service_type"]
        assert _matches(substitute(flt, ALL), labels) is fits, path.name
        assert _matches(substitute(flt, {**ALL, "instance": "logs-b"}), labels) is fits, path.name
        assert not _matches(substitute(flt, {**ALL, "instance": "search-b"}), labels), path.name
    # Tenant A sees none of tenant B's alerts.
    seen_by_a = _get(gateway_url, tenants.a, "/api/v1/alerts", [])["alerts"]
    assert {a["labels"]["cf_space_guid"] for a in seen_by_a} <= {SPACE_A1}
