"""The dashboards import cleanly into Grafana and every expression is valid PromQL on Aiven's metric names."""

from __future__ import annotations

import re
from pathlib import Path

import promql_parser
import pytest

from tenant_metrics.dashboards import build
from tenant_metrics.fakes.exporter import NodeIdentity, render_metrics
from tests.ui.dashboards_util import dashboard_files, expressions, load, substitute

FILES = dashboard_files()
ALL = {"org": ".*", "space": ".*", "instance": ".*"}


def _emitted_names() -> set[str]:
    """Metric names an Aiven node emits (per the fake exporter)."""
    names = {"up"}
    for kind in ("opensearch", "elasticsearch"):
        identity = NodeIdentity(service="s", node="s-1", service_type=kind)
        text = render_metrics(identity, 10.0, 1)
        names |= {line.split("{", 1)[0] for line in text.splitlines() if line and not line.startswith("#")}
    return names


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
            assert name in emitted, f"{path.name} {e.where} uses {name}, which Aiven does not emit"


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
