"""The dashboards import cleanly into Grafana and every expression is valid PromQL on Aiven's metric names."""

from __future__ import annotations

import re
from pathlib import Path

import promql_parser
import pytest

from tenant_metrics.dashboards import build
from tenant_metrics.fakes.exporter import NodeIdentity, render_metrics
from tenant_metrics.rules import groups as rule_groups
from tests.ui.dashboards_util import dashboard_files, expressions, load, substitute

FILES = dashboard_files()
ALL = {"org": ".*", "space": ".*", "instance": ".*"}


def _recorded_names() -> set[str]:
    """Series the platform's shipped recording rules write."""
    return {rule["record"] for group in rule_groups() for rule in group["rules"] if "record" in rule}


def _emitted_names() -> set[str]:
    """Metric names an Aiven node emits (per the fake exporter), and what the shipped rules record from them."""
    names = {"up"}
    for kind in ("opensearch", "elasticsearch"):
        identity = NodeIdentity(service="s", node="s-1", service_type=kind)
        text = render_metrics(identity, 10.0, 1)
        names |= {line.split("{", 1)[0] for line in text.splitlines() if line and not line.startswith("#")}
    return names | _recorded_names()


def test_there_is_a_dashboard_for_each_integrated_search_type() -> None:
    types = {load(p)["uid"] for p in FILES}
    assert {"tm-aiven-opensearch", "tm-aiven-elasticsearch"} <= types


def test_files_match_their_generator() -> None:
    assert build.main(["--check"]) == 0, "run: python -m tenant_metrics.dashboards.build"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_expression_parses(path: Path) -> None:
    found = expressions(load(path))
    assert len(found) >= 20
    for e in found:
        try:
            promql_parser.parse(substitute(e.expr, ALL))
        except (ValueError, RuntimeError) as exc:  # promql_parser raises ValueError on bad input
            pytest.fail(f"{path.name} {e.where}: {exc}: {e.expr}")


def test_a_broken_expression_is_caught() -> None:
    """The parse check above can fail: a typo'd expression is refused."""
    with pytest.raises(ValueError):
        promql_parser.parse(substitute('max by (x) (up{a="$org"}', ALL))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_only_metric_names_aiven_emits(path: Path) -> None:
    emitted = _emitted_names()
    for e in expressions(load(path)):
        for name in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", e.expr):
            assert name in emitted, f"{path.name} {e.where} uses {name}, which neither Aiven nor our rules emit"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_provisionable_with_a_datasource_variable(path: Path) -> None:
    """No import-time placeholder: provisioning, the HTTP API and Terraform take the file as is."""
    d = load(path)
    assert "__inputs" not in d
    text = path.read_text()
    assert "${DS_" not in text
    first = d["templating"]["list"][0]
    assert (first["name"], first["type"], first["query"]) == ("datasource", "datasource", "prometheus")
    # No datasource is hard-coded: every reference goes through the variable.
    uids = set(re.findall(r'"uid":\s*"([^"]*)"', text)) - {d["uid"]}
    assert uids == {"${datasource}"}
    grafana = next(r for r in d["__requires"] if r["id"] == "grafana")
    assert d["schemaVersion"] <= 39 and grafana["version"] == "10.3.0"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in d["panels"]:
        assert {"x", "y", "w", "h"} <= set(p["gridPos"])


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_variables_for_org_space_and_instance(path: Path) -> None:
    d = load(path)
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert list(variables) == ["datasource", "org", "space", "instance"]
    wanted = {"org": "cf_organization_name", "space": "cf_space_name", "instance": "cf_service_instance_name"}
    by_name = {e.where.split()[-1]: e for e in expressions(d) if e.where.startswith("variable")}
    for name, label in wanted.items():
        assert by_name[name].label == label
        assert variables[name]["includeAll"] and variables[name]["multi"]
    # Every panel follows the variables: no panel shows more than the chosen instances.
    for e in expressions(d):
        if e.where.startswith("panel"):
            for selector in re.findall(r"\{[^}]*\}", e.expr):
                assert 'cf_service_instance_name=~"$instance"' in selector, e.where


def test_the_name_check_refuses_an_unknown_recording_rule() -> None:
    """The allow-list is the shipped rules, not any name with colons."""
    assert "aiven_service:disk_used_percent:max" in _emitted_names()
    assert "aiven_service:disk_used_percent:avg" not in _emitted_names()


def _panel_of(d: dict, kind: str) -> list[dict]:
    return [p for p in d["panels"] if p["type"] == kind]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_requires_lists_exactly_the_panel_types_used(path: Path) -> None:
    d = load(path)
    required = {r["id"] for r in d["__requires"] if r["type"] == "panel"}
    used = {p["type"] for p in d["panels"]} - {"row"}
    assert required == used


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_an_alert_list_of_the_datasource_s_firing_and_pending_alerts(path: Path) -> None:
    d = load(path)
    rows = [p["title"] for p in _panel_of(d, "row")]
    assert rows[:2] == ["Alerts", "Capacity"]  # at the top
    (panel,) = _panel_of(d, "alertlist")
    assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    opts = panel["options"]
    assert opts["datasource"] == "${datasource}"  # the data source's rules, not Grafana-managed ones
    assert opts["stateFilter"]["firing"] and opts["stateFilter"]["pending"]
    assert not opts["stateFilter"]["normal"]
    assert opts["groupMode"] == "custom" and opts["groupBy"] == ["cf_service_instance_name"]
    flt = opts["alertInstanceLabelFilter"]
    assert 'cf_service_instance_name=~"${instance:regex}"' in flt
    assert f'aiven_service_type="{d["tags"][-1]}"' in flt
    # The filter is a label-matcher list Grafana (and Prometheus) can parse.
    promql_parser.parse(substitute(flt, ALL))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_capacity_row_reads_the_recording_rules(path: Path) -> None:
    d = load(path)
    capacity_y = next(p["gridPos"]["y"] for p in _panel_of(d, "row") if p["title"] == "Capacity")
    next_row_y = min(p["gridPos"]["y"] for p in _panel_of(d, "row") if p["gridPos"]["y"] > capacity_y)
    in_row = [p for p in d["panels"] if capacity_y < p["gridPos"]["y"] < next_row_y]
    used = {name for p in in_row for t in p["targets"] for name in re.findall(r"([a-z_]+:[a-z_]+:[a-z0-9_]+)\{", t["expr"])}
    assert used == set(build.RECORDED_NAMES) and used <= _recorded_names()
    days = next(p for p in in_row if build.DAYS_TO_FULL in p["targets"][0]["expr"])
    assert days["fieldConfig"]["defaults"]["noValue"] == "not filling"
