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
def test_imports_cleanly_with_a_datasource_input(path: Path) -> None:
    d = load(path)
    assert [i["name"] for i in d["__inputs"]] == ["DS_PROMETHEUS"]
    assert d["__inputs"][0]["pluginId"] == "prometheus"
    text = path.read_text()
    # No datasource is hard-coded: every reference goes through the import input.
    uids = set(re.findall(r'"uid":\s*"([^"]*)"', text)) - {d["uid"]}
    assert uids == {"${DS_PROMETHEUS}"}
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in d["panels"]:
        assert {"x", "y", "w", "h"} <= set(p["gridPos"])


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_variables_for_org_space_and_instance(path: Path) -> None:
    d = load(path)
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert list(variables) == ["org", "space", "instance"]
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
