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
