"""Table tests of the pure filters (gateway/filters.py): what a tenant sees of targets and metadata."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.enforce import TenantMatcher
from gateway.filters import fold_metadata, tenant_targets
from tenant_metrics.core.errors import UpstreamError

SPACE_A = TenantMatcher("cf_space_guid", "space-a")
ORG_2 = TenantMatcher("cf_organization_guid", "org-2")


def _target(space: str, org: str, **extra: Any) -> dict[str, Any]:
    return {
        "labels": {"job": "aiven", "cf_space_guid": space, "cf_organization_guid": org},
        "discoveredLabels": {"__address__": f"{space}:9273", "__meta_secret": "x"},
        "scrapeUrl": f"http://{space}:9273/metrics",
        "health": "up",
        **extra,
    }


def _targets(*active: Any, dropped: list[Any] | None = None) -> dict[str, Any]:
    return {"status": "success", "data": {"activeTargets": list(active), "droppedTargets": dropped or []}}


def _shown(target: dict[str, Any]) -> dict[str, Any]:
    return {**target, "discoveredLabels": {}}


A1, B2, A2 = _target("space-a", "org-1"), _target("space-b", "org-2"), _target("space-a", "org-2")

# (answer, matcher, the activeTargets shown)
TARGETS = [
    (_targets(A1, B2), SPACE_A, [_shown(A1)]),
    (_targets(A1, B2), ORG_2, [_shown(B2)]),
    (_targets(A1, B2, A2), SPACE_A, [_shown(A1), _shown(A2)]),  # order kept
    (_targets(A1, B2, A2), ORG_2, [_shown(B2), _shown(A2)]),
    (_targets(B2), SPACE_A, []),
    (_targets(), SPACE_A, []),
    # The value must be equal, not a prefix, a regex match or another case.
    (_targets(_target("space-ab", "o"), _target("space-", "o"), _target("SPACE-A", "o"), _target(".*", "o")),
     SPACE_A, []),
    # The tenant's value under another label name is not the tenant's.
    (_targets({"labels": {"job": "x", "cf_organization_guid": "space-a"}}), SPACE_A, []),
    # Entries that are not targets, or have no labels, are left out.
    (_targets("space-a", None, 1, [], {"discoveredLabels": {"cf_space_guid": "space-a"}},
              {"labels": ["cf_space_guid", "space-a"]}, {"labels": None}), SPACE_A, []),
    # A label value that is not a string never equals the tenant's.
    (_targets({"labels": {"cf_space_guid": ["space-a"]}}), SPACE_A, []),
    # Every other field of the tenant's own target is kept as Prometheus sent it.
    (_targets(_target("space-a", "o", lastError="boom", scrapePool="p")), SPACE_A,
     [_shown(_target("space-a", "o", lastError="boom", scrapePool="p"))]),
    # A target without discoveredLabels still gets an empty one (the shape Grafana reads).
    (_targets({"labels": {"cf_space_guid": "space-a"}}), SPACE_A,
     [{"labels": {"cf_space_guid": "space-a"}, "discoveredLabels": {}}]),
    ({"status": "success", "data": {"activeTargets": None}}, SPACE_A, []),
    ({"status": "success", "data": {}}, SPACE_A, []),
    ({"status": "success"}, SPACE_A, []),
]


@pytest.mark.parametrize(("answer", "matcher", "shown"), TARGETS)
def test_tenant_targets(answer: dict[str, Any], matcher: TenantMatcher, shown: list[Any]) -> None:
    got = tenant_targets(answer, matcher)
    assert got == {"activeTargets": shown, "droppedTargets": []}


def test_tenant_targets_never_shows_dropped_or_discovered_labels() -> None:
    answer = _targets(A1, dropped=[{"discoveredLabels": {"__address__": "secret:1", "cf_space_guid": "space-a"}}])
    got = tenant_targets(answer, SPACE_A)
    assert got["droppedTargets"] == []
    assert all(t["discoveredLabels"] == {} for t in got["activeTargets"])
    assert "secret" not in repr(got) and "__meta_secret" not in repr(got)
    assert answer["data"]["activeTargets"][0]["discoveredLabels"]  # the input is not changed


@pytest.mark.parametrize(
    "data", [[], ["x"], "targets", 1, {"activeTargets": "x"}, {"activeTargets": {"a": A1}}],
)
def test_tenant_targets_of_an_unexpected_shape_is_an_upstream_error(data: Any) -> None:
    with pytest.raises(UpstreamError, match="unexpected response"):
        tenant_targets({"status": "success", "data": data}, SPACE_A)


def _meta(*entries: Any) -> dict[str, Any]:
    return {"status": "success", "data": list(entries)}


def _entry(metric: str | None, type_: str = "counter", help_: str = "h", unit: str = "", job: str = "a") -> dict[str, Any]:
    entry: dict[str, Any] = {"target": {"job": job}, "type": type_, "help": help_, "unit": unit}
    if metric is not None:
        entry["metric"] = metric
    return entry


C = {"type": "counter", "help": "h", "unit": ""}

# (answer, metric, limit, folded)
METADATA = [
    (None, None, None, {}),  # the upstream did not answer 200
    (_meta(), None, None, {}),
    ({"status": "success"}, None, None, {}),
    (_meta(_entry("a_total")), None, None, {"a_total": [C]}),
    # The same HELP/TYPE/UNIT from two targets shows once; a different one shows too, in order.
    (_meta(_entry("a_total", job="a"), _entry("a_total", job="b")), None, None, {"a_total": [C]}),
    (_meta(_entry("a_total"), _entry("a_total", help_="other")), None, None,
     {"a_total": [C, {"type": "counter", "help": "other", "unit": ""}]}),
    (_meta(_entry("b"), _entry("a"), _entry("c", "gauge", "g", "seconds")), None, None,
     {"b": [C], "a": [C], "c": [{"type": "gauge", "help": "g", "unit": "seconds"}]}),
    # With ?metric=, Prometheus leaves "metric" out of each entry: the asked name is used.
    (_meta(_entry(None), _entry(None, help_="x")), "a_total", None,
     {"a_total": [C, {"type": "counter", "help": "x", "unit": ""}]}),
    # Without ?metric=, an entry without a name is left out; so is one that is not an entry.
    (_meta(_entry(None), "a_total", None, 3, _entry("b")), None, None, {"b": [C]}),
    (_meta({"metric": 5, "type": "counter"}), None, None, {}),
    # Missing fields are empty strings; values are strings, whatever Prometheus sent.
    (_meta({"metric": "m"}), None, None, {"m": [{"type": "", "help": "", "unit": ""}]}),
    (_meta({"metric": "m", "type": 1, "help": None, "unit": "s", "extra": "dropped"}), None, None,
     {"m": [{"type": "1", "help": "None", "unit": "s"}]}),
    # limit: at most that many names, the first ones; 0 or None is no limit.
    (_meta(_entry("a"), _entry("b"), _entry("c")), None, 2, {"a": [C], "b": [C]}),
    (_meta(_entry("a"), _entry("a", help_="x"), _entry("b")), None, 1,
     {"a": [C, {"type": "counter", "help": "x", "unit": ""}]}),
    (_meta(_entry("a"), _entry("b")), None, 0, {"a": [C], "b": [C]}),
    (_meta(_entry("a"), _entry("b")), None, 10, {"a": [C], "b": [C]}),
]


@pytest.mark.parametrize(("answer", "metric", "limit", "folded"), METADATA)
def test_fold_metadata(answer: dict[str, Any] | None, metric: str | None, limit: int | None, folded: Any) -> None:
    assert fold_metadata(answer, metric, limit) == folded


@pytest.mark.parametrize("data", [{"a_total": []}, "a_total", 1])
def test_fold_metadata_of_an_unexpected_shape_is_an_upstream_error(data: Any) -> None:
    with pytest.raises(UpstreamError, match="unexpected response"):
        fold_metadata({"status": "success", "data": data}, None, None)


# --- alerting rules and alerts (tenant_rules, tenant_alerts) ------------------------------

from gateway.filters import RuleQuery, names_another_tenant, tenant_alerts, tenant_rules  # noqa: E402

ORG_1 = TenantMatcher("cf_organization_guid", "org-1")
SPACE_B = TenantMatcher("cf_space_guid", "space-b")
OWNED = "max by (cf_space_guid, cf_organization_guid) (health_status) >= 3"


def _inst(space: str, org: str, state: str = "firing", **extra: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": "Red", "cf_space_guid": space, "cf_organization_guid": org, **extra},
        "annotations": {"summary": f"{space} is red"},
        "state": state,
        "activeAt": "2026-12-04T19:00:00Z",
        "value": "3e+00",
    }


def _rule(name: str = "Red", query: str = OWNED, alerts: list[Any] | None = None, labels: dict[str, str] | None = None,
          annotations: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "state": "firing" if alerts else "inactive",
        "name": name,
        "query": query,
        "duration": 300,
        "labels": labels if labels is not None else {"severity": "critical"},
        "annotations": annotations if annotations is not None else {"summary": "{{ $labels.cf_space_guid }} red"},
        "alerts": alerts or [],
        "health": "ok",
        "evaluationTime": 0.0021,
        "lastEvaluation": "2026-12-04T19:05:00Z",
        "type": "alerting",
        **extra,
    }


def _record(name: str = "job:up:sum") -> dict[str, Any]:
    return {"name": name, "query": "sum by (job) (up)", "labels": {}, "health": "ok", "evaluationTime": 0.001,
            "lastEvaluation": "2026-12-04T19:05:00Z", "type": "recording"}


def _group(*rules: Any, name: str = "g", file: str = "/etc/prometheus/rules.yml") -> dict[str, Any]:
    return {"name": name, "file": file, "rules": list(rules), "interval": 60, "limit": 0,
            "evaluationTime": 0.004, "lastEvaluation": "2026-12-04T19:05:00Z"}


def _rules(*groups: Any) -> dict[str, Any]:
    return {"status": "success", "data": {"groups": list(groups)}}


def _names(shown: dict[str, Any]) -> list[tuple[str, str, str, list[str]]]:
    """(group, rule, state, the instances' spaces) of every rule shown."""
    return [(g["name"], r["name"], r["state"], [a["labels"]["cf_space_guid"] for a in r.get("alerts", [])])
            for g in shown["groups"] for r in g["rules"]]


TENANT_AUDIENCE = {"audience": "tenant", "severity": "critical"}
A_FIRING, B_FIRING = _inst("space-a", "org-1"), _inst("space-b", "org-2")
A_PENDING, B_PENDING = _inst("space-a", "org-1", "pending"), _inst("space-b", "org-2", "pending")
C_FIRING = _inst("space-c", "org-1")

# (groups, matcher, (group, rule, state, instances' spaces) shown)
RULES = [
    # Instances of two tenants: each sees its own only, the state recomputed from them.
    ([_group(_rule(alerts=[A_FIRING, B_PENDING]))], SPACE_A, [("g", "Red", "firing", ["space-a"])]),
    ([_group(_rule(alerts=[A_FIRING, B_PENDING]))], SPACE_B, [("g", "Red", "pending", ["space-b"])]),
    ([_group(_rule(alerts=[A_PENDING, B_FIRING]))], SPACE_A, [("g", "Red", "pending", ["space-a"])]),
    # An org tenant sees every space of its org, and no other org's.
    ([_group(_rule(alerts=[A_FIRING, B_FIRING, C_FIRING]))], ORG_1, [("g", "Red", "firing", ["space-a", "space-c"])]),
    ([_group(_rule(alerts=[B_FIRING]))], ORG_1, []),
    # Without instances of the tenant's and without audience: tenant, nothing is shown.
    ([_group(_rule(alerts=[B_FIRING]))], SPACE_A, []),
    ([_group(_rule())], SPACE_A, []),
    # audience: tenant shows while inactive, with no instances; or with only the tenant's.
    ([_group(_rule(labels=TENANT_AUDIENCE))], SPACE_A, [("g", "Red", "inactive", [])]),
    ([_group(_rule(labels=TENANT_AUDIENCE, alerts=[B_FIRING]))], SPACE_A, [("g", "Red", "inactive", [])]),
    ([_group(_rule(labels=TENANT_AUDIENCE, alerts=[B_FIRING, A_PENDING]))], SPACE_A,
     [("g", "Red", "pending", ["space-a"])]),
    # audience: platform never shows, even with the tenant's instances.
    ([_group(_rule(labels={"audience": "platform"}, alerts=[A_FIRING]))], SPACE_A, []),
    # Recording rules never show.
    ([_group(_record(), _rule(alerts=[A_FIRING]))], SPACE_A, [("g", "Red", "firing", ["space-a"])]),
    ([_group(_record())], SPACE_A, []),
    # A rule pinned to another tenant never shows, not even its instances carrying ours.
    ([_group(_rule(query='up{cf_space_guid="space-b"} == 0', labels=TENANT_AUDIENCE, alerts=[A_FIRING]))],
     SPACE_A, []),
    ([_group(_rule(query='up{cf_space_guid=~"space-a|space-b"} == 0', labels=TENANT_AUDIENCE))], SPACE_A, []),
    ([_group(_rule(query='up{cf_space_guid!="space-b"} == 0', alerts=[A_FIRING]))], SPACE_A, []),
    ([_group(_rule(query='up{cf_service_instance_name="orders"} == 0', alerts=[A_FIRING]))], SPACE_A, []),
    ([_group(_rule(query='up{aiven_service_name="tm-b"} == 0', alerts=[A_FIRING]))], SPACE_A, []),
    # ... nor one with another tenant's static owner label, nor one that writes an owner label.
    ([_group(_rule(labels={"audience": "tenant", "cf_space_guid": "space-b"}))], SPACE_A, []),
    ([_group(_rule(query='label_replace(up, "cf_space_guid", "space-b", "", "") == 0', alerts=[A_FIRING]))],
     SPACE_A, []),
    # A space tenant cannot tell its own org's GUID from another's: an org pin is refused.
    ([_group(_rule(query='up{cf_organization_guid="org-1"} == 0', alerts=[A_FIRING]))], SPACE_A, []),
    # An expression that cannot be read is refused (fail closed).
    ([_group(_rule(query="up{", labels=TENANT_AUDIENCE))], SPACE_A, []),
    # Pinning the tenant's own value is fine; so are matchers that name no tenant.
    ([_group(_rule(query='up{cf_space_guid="space-a"} == 0', labels=TENANT_AUDIENCE))], SPACE_A,
     [("g", "Red", "inactive", [])]),
    ([_group(_rule(query='up{cf_space_guid="space-a"} == 0', labels=TENANT_AUDIENCE))], SPACE_B, []),
    ([_group(_rule(labels={"audience": "tenant", "cf_space_guid": "space-a"}))], SPACE_A,
     [("g", "Red", "inactive", [])]),
    ([_group(_rule(query='up{cf_space_guid!="", aiven_service_type=~"opensearch|x"} == 0', alerts=[A_FIRING]))],
     SPACE_A, [("g", "Red", "firing", ["space-a"])]),
    # Only pending and firing instances; an exact label value, not a prefix or a regex.
    ([_group(_rule(alerts=[_inst("space-a", "o", "inactive"), _inst("space-ab", "o"), _inst(".*", "o"),
                           _inst("SPACE-A", "o")]))], SPACE_A, []),
    # Groups that end up empty are dropped; order is kept.
    ([_group(_rule(alerts=[B_FIRING]), name="g1"), _group(_rule("R2", alerts=[A_FIRING]), _rule("R3", alerts=[A_PENDING]),
                                                          name="g2")],
     SPACE_A, [("g2", "R2", "firing", ["space-a"]), ("g2", "R3", "pending", ["space-a"])]),
    ([], SPACE_A, []),
]


@pytest.mark.parametrize(("groups", "matcher", "shown"), RULES)
def test_tenant_rules(groups: list[Any], matcher: TenantMatcher, shown: list[Any]) -> None:
    assert _names(tenant_rules(_rules(*groups), matcher, RuleQuery())) == shown


def test_a_shown_rule_keeps_prometheus_shape_and_drops_what_names_others() -> None:
    rule = _rule(alerts=[A_FIRING, B_FIRING], lastError="vector contains metrics with the same labelset "
                 '{cf_space_guid="space-b"}', health="err", keepFiringFor=0)
    got = tenant_rules(_rules(_group(rule)), SPACE_A, RuleQuery())
    group = got["groups"][0]
    assert set(group) == {"name", "file", "rules", "interval", "limit", "evaluationTime", "lastEvaluation"}
    assert (group["file"], group["interval"], group["evaluationTime"]) == ("/etc/prometheus/rules.yml", 60, 0)
    shown = group["rules"][0]
    assert shown == {
        "state": "firing", "name": "Red", "query": OWNED, "duration": 300, "keepFiringFor": 0,
        "labels": {"severity": "critical"}, "annotations": {}, "alerts": [A_FIRING], "health": "err",
        "evaluationTime": 0, "lastEvaluation": "2026-12-04T19:05:00Z", "type": "alerting",
    }
    assert "space-b" not in repr(got)
    assert rule["alerts"] == [A_FIRING, B_FIRING]  # the input is not changed


def test_rule_annotations_show_only_for_audience_tenant() -> None:
    annotations = {"summary": "red", "runbook": "https://runbooks/red"}
    tenant = tenant_rules(_rules(_group(_rule(labels=TENANT_AUDIENCE, annotations=annotations))), SPACE_A, RuleQuery())
    assert tenant["groups"][0]["rules"][0]["annotations"] == annotations
    other = tenant_rules(_rules(_group(_rule(annotations=annotations, alerts=[A_FIRING]))), SPACE_A, RuleQuery())
    assert other["groups"][0]["rules"][0]["annotations"] == {}
    assert other["groups"][0]["rules"][0]["alerts"][0]["annotations"] == A_FIRING["annotations"]


TWO_GROUPS = _rules(
    _group(_rule("Red", alerts=[A_FIRING]), _rule("Yellow", labels=TENANT_AUDIENCE), _record(), name="g1", file="/a.yml"),
    _group(_rule("Red", alerts=[A_PENDING]), _rule("Secret", alerts=[B_FIRING]), name="g2", file="/b.yml"),
)

# (query parameters, what SPACE_A sees)
PARAMETERS = [
    (RuleQuery(), [("g1", "Red", "firing", ["space-a"]), ("g1", "Yellow", "inactive", []),
                   ("g2", "Red", "pending", ["space-a"])]),
    (RuleQuery(type="alert"), [("g1", "Red", "firing", ["space-a"]), ("g1", "Yellow", "inactive", []),
                               ("g2", "Red", "pending", ["space-a"])]),
    (RuleQuery(type="record"), []),
    (RuleQuery(names=frozenset({"Red"})), [("g1", "Red", "firing", ["space-a"]), ("g2", "Red", "pending", ["space-a"])]),
    (RuleQuery(names=frozenset({"Yellow", "job:up:sum"})), [("g1", "Yellow", "inactive", [])]),
    (RuleQuery(names=frozenset({"Secret"})), []),  # another tenant's rule: as absent as a made-up name
    (RuleQuery(names=frozenset({"Nope"})), []),
    (RuleQuery(groups=frozenset({"g2"})), [("g2", "Red", "pending", ["space-a"])]),
    (RuleQuery(files=frozenset({"/a.yml"})), [("g1", "Red", "firing", ["space-a"]), ("g1", "Yellow", "inactive", [])]),
    (RuleQuery(files=frozenset({"/a.yml"}), groups=frozenset({"g2"})), []),
    (RuleQuery(names=frozenset({"Red"}), groups=frozenset({"g1", "g2"}), files=frozenset({"/b.yml"})),
     [("g2", "Red", "pending", ["space-a"])]),
]


@pytest.mark.parametrize(("wanted", "shown"), PARAMETERS)
def test_rule_parameters_narrow_what_the_tenant_may_see(wanted: RuleQuery, shown: list[Any]) -> None:
    assert _names(tenant_rules(TWO_GROUPS, SPACE_A, wanted)) == shown


def test_exclude_alerts_leaves_out_instances_but_keeps_the_state() -> None:
    got = tenant_rules(TWO_GROUPS, SPACE_A, RuleQuery(exclude_alerts=True))
    rules = [r for g in got["groups"] for r in g["rules"]]
    assert [(r["name"], r["state"]) for r in rules] == [("Red", "firing"), ("Yellow", "inactive"), ("Red", "pending")]
    assert all("alerts" not in r for r in rules)


# (groups, matcher, the alerts shown)
ALERTS = [
    ([_group(_rule(alerts=[A_FIRING, B_PENDING]))], SPACE_A, [A_FIRING]),
    ([_group(_rule(alerts=[A_FIRING, B_PENDING]))], SPACE_B, [B_PENDING]),
    ([_group(_rule(alerts=[A_FIRING, B_FIRING, C_FIRING])), _group(_rule("R2", alerts=[A_PENDING]))], ORG_1,
     [A_FIRING, C_FIRING, A_PENDING]),
    ([_group(_rule(labels={"audience": "platform"}, alerts=[A_FIRING]))], SPACE_A, []),
    ([_group(_rule(query='up{cf_space_guid="space-b"} == 0', alerts=[A_FIRING]))], SPACE_A, []),
    ([_group(_rule(labels=TENANT_AUDIENCE))], SPACE_A, []),
    ([], SPACE_A, []),
]


@pytest.mark.parametrize(("groups", "matcher", "shown"), ALERTS)
def test_tenant_alerts(groups: list[Any], matcher: TenantMatcher, shown: list[Any]) -> None:
    assert tenant_alerts(_rules(*groups), matcher) == {"alerts": shown}


@pytest.mark.parametrize(("query", "labels", "named"), [
    (OWNED, {}, False),
    ('up{cf_space_guid="space-a"}', {}, False),
    ('up{cf_space_guid="space-a"} or up{cf_space_guid="space-b"}', {}, True),
    ('sum(rate(x{cf_space_guid="space-b"}[5m]))', {}, True),
    ('max_over_time(x{cf_space_guid="space-b"}[5m:1m])', {}, True),
    ('-(x{cf_space_guid="space-b"})', {}, True),
    ('topk(1, x{cf_space_guid="space-b"})', {}, True),
    ('x{cf_space_guid="space-a" or cf_space_guid="space-b"}', {}, True),
    ('label_join(up, "cf_organization_guid", ",", "job")', {}, True),
    ('label_replace(up, "job", "$1", "cf_space_guid", "(.*)")', {}, False),
    ('up{cf_space_guid=~".+"}', {}, False),
    (OWNED, {"cf_organization_name": "acme"}, True),
    (OWNED, {"aiven_plan": "business-4"}, False),
    ("", {}, True),
    (None, {}, True),
])
def test_names_another_tenant(query: str | None, labels: dict[str, str], named: bool) -> None:
    assert names_another_tenant({"query": query, "labels": labels}, SPACE_A) is named


@pytest.mark.parametrize("data", [
    [], "groups", {"groups": "g"}, {"groups": ["g"]}, {"groups": [{"rules": "r"}]}, {"groups": [{"rules": ["r"]}]},
    {"groups": [{"rules": [{"type": "alerting", "query": OWNED, "labels": [], "alerts": []}]}]},
    {"groups": [{"rules": [{"type": "alerting", "query": OWNED, "alerts": "a"}]}]},
    {"groups": [{"rules": [{"type": "alerting", "query": OWNED, "alerts": ["a"]}]}]},
])
def test_rules_of_an_unexpected_shape_are_an_upstream_error(data: Any) -> None:
    with pytest.raises(UpstreamError, match="unexpected response"):
        tenant_rules({"status": "success", "data": data}, SPACE_A, RuleQuery())
    with pytest.raises(UpstreamError, match="unexpected response"):
        tenant_alerts({"status": "success", "data": data}, SPACE_A)
