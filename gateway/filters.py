"""What a tenant may see of Prometheus answers that label enforcement cannot narrow.

Pure functions over a parsed upstream answer (Prometheus's ``{"status": "success",
"data": ...}`` envelope, already checked by ``Relay.fetch_json``) and the tenant's
matcher; each returns the ``data`` the gateway answers with. An answer whose ``data`` is
not of the shape Prometheus sends is an UpstreamError, never a 500.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import promql_parser as pp

from gateway.enforce import QueryLimits, TenantMatcher, parse
from tenant_metrics.core.errors import InvalidInput, UpstreamError
from tenant_metrics.core.labels import AIVEN_SERVICE_NAME, TARGET_LABELS

Metadata = dict[str, list[dict[str, str]]]
_METADATA_FIELDS = ("type", "help", "unit")


def _data(answer: dict[str, Any], kind: type) -> Any:
    data = answer.get("data")
    if data is None:
        return kind()
    if not isinstance(data, kind):
        raise UpstreamError("Prometheus sent an unexpected response")
    return data


def tenant_targets(answer: dict[str, Any], matcher: TenantMatcher) -> dict[str, list[Any]]:
    """/api/v1/targets: only active targets whose labels carry the tenant's exact value.

    Their ``discoveredLabels`` are emptied and dropped targets are never shown: both are
    unfiltered service-discovery data (other tenants' addresses and labels)."""
    found = _data(answer, dict).get("activeTargets") or []
    if not isinstance(found, list):
        raise UpstreamError("Prometheus sent an unexpected response")
    active = []
    for target in found:
        labels = target.get("labels") if isinstance(target, dict) else None
        if isinstance(labels, dict) and labels.get(matcher.label) == matcher.value:
            kept = {k: v for k, v in target.items() if k != "discoveredLabels"}
            kept["discoveredLabels"] = {}
            active.append(kept)
    return {"activeTargets": active, "droppedTargets": []}


def fold_metadata(answer: dict[str, Any] | None, metric: str | None, limit: int | None) -> Metadata:
    """/api/v1/targets/metadata's per-target entries folded into /api/v1/metadata's shape.

    The tenant's targets were chosen upstream (``match_target`` with the tenant's matcher,
    see the metadata route); this keeps one entry per distinct HELP/TYPE/UNIT, in order,
    and at most ``limit`` metric names (0 or None: all). ``answer`` None (not a 200): no
    metadata. With ``?metric=``, Prometheus leaves "metric" out of each entry."""
    if answer is None:
        return {}
    merged: Metadata = {}
    for entry in _data(answer, list):
        name = entry.get("metric", metric) if isinstance(entry, dict) else None
        if not isinstance(name, str):
            continue
        item = {k: str(entry.get(k, "")) for k in _METADATA_FIELDS}
        seen = merged.setdefault(name, [])
        if item not in seen:
            seen.append(item)
    if limit:
        merged = dict(list(merged.items())[:limit])
    return merged


# --- alerting rules and their alerts: /api/v1/rules and /api/v1/alerts ---------------------

# Labels whose value names one tenant (an org, space or service, or its Aiven service). A
# rule whose expression or static labels pin one of them to anything but the tenant's own
# enforced value is never shown: it is tenant-specific for someone else (or we cannot tell).
OWNER_NAMING: frozenset[str] = frozenset(
    [label for label in TARGET_LABELS if label.startswith("cf_")] + [AIVEN_SERVICE_NAME]
)
_NAMES_NOBODY = frozenset({"", ".*", ".+"})  # `{cf_space_guid!=""}` and the like name no tenant
_WRITES_LABEL = frozenset({"label_replace", "label_join"})  # their 2nd argument names the label written
# Rule expressions are written by operators, not tenants, but are bounded all the same.
RULE_LIMITS = QueryLimits(max_length=65536, max_depth=128, max_operators=1024)
_STATES = ("firing", "pending")
# MatchOp values are not hashable: a list searched by equality.
_OPS = ((pp.MatchOp.Equal, "="), (pp.MatchOp.NotEqual, "!="), (pp.MatchOp.Re, "=~"), (pp.MatchOp.NotRe, "!~"))
_RULE_FIELDS = ("name", "query", "duration", "keepFiringFor", "labels", "health", "lastEvaluation", "type")
_GROUP_FIELDS = ("name", "file", "interval", "limit", "lastEvaluation")


@dataclass(frozen=True, slots=True)
class RuleQuery:
    """The filters of /api/v1/rules as Prometheus reads them; applied here, after the tenant's
    own filter, so they can only narrow what the tenant may see (never probe what it may not)."""

    type: str | None = None  # "alert", "record" or None (both)
    names: frozenset[str] = frozenset()  # rule_name[]; empty: no filter
    groups: frozenset[str] = frozenset()  # rule_group[]
    files: frozenset[str] = frozenset()  # file[]
    exclude_alerts: bool = False


@dataclass(frozen=True, slots=True)
class Pin:
    """A matcher (or a label_replace/label_join target, op "write") on an owner-naming label."""

    label: str
    op: str
    value: str


def _expect(value: Any, kind: type) -> Any:
    if not isinstance(value, kind):
        raise UpstreamError("Prometheus sent an unexpected response")
    return value


def _field(obj: dict[str, Any], key: str, kind: type) -> Any:
    """``obj[key]`` of type ``kind``; absent or null is an empty ``kind``."""
    value = obj.get(key)
    return kind() if value is None else _expect(value, kind)


@lru_cache(maxsize=1024)
def owner_pins(query: str) -> tuple[Pin, ...] | None:
    """Every place a rule's expression names an owner-naming label; None if it cannot be
    read (an expression we cannot check is treated as naming someone else)."""
    try:
        root = parse(query, RULE_LIMITS)
    except InvalidInput:
        return None
    pins: list[Pin] = []
    todo = [root]
    while todo:
        node = todo.pop()
        kind = type(node)
        if kind is pp.VectorSelector:
            groups = [list(node.matchers.matchers)] + [list(g) for g in node.matchers.or_matchers]
            for group in groups:
                for m in group:
                    if m.name in OWNER_NAMING:
                        op = next((text for known, text in _OPS if m.op == known), "?")
                        pins.append(Pin(m.name, op, m.value))
        elif kind is pp.MatrixSelector:
            todo.append(node.vector_selector)
        elif kind in (pp.SubqueryExpr, pp.ParenExpr, pp.UnaryExpr):
            todo.append(node.expr)
        elif kind is pp.AggregateExpr:
            todo.append(node.expr)
            if node.param is not None:
                todo.append(node.param)
        elif kind is pp.BinaryExpr:
            todo.extend((node.lhs, node.rhs))
        elif kind is pp.Call:
            args = list(node.args)
            if node.func.name in _WRITES_LABEL and len(args) > 1 and type(args[1]) is pp.StringLiteral:
                if args[1].val in OWNER_NAMING:
                    pins.append(Pin(args[1].val, "write", ""))
            todo.extend(args)
        elif kind not in (pp.NumberLiteral, pp.StringLiteral):
            return None  # fail closed: a node we do not know might hide a selector
    return tuple(pins)


def names_another_tenant(rule: dict[str, Any], matcher: TenantMatcher) -> bool:
    """True if the rule's expression or static labels name any tenant but ``matcher``'s own.

    Pinning the tenant's own enforced label to its own value is fine; any other value, any
    other owner-naming label (a space tenant cannot tell its org's GUID from another's), a
    regex naming values, or an expression that cannot be checked, is not."""
    query = rule.get("query")
    pins = owner_pins(query) if isinstance(query, str) else None
    if pins is None:
        return True
    for pin in pins:
        if pin.op == "=" and pin.label == matcher.label and pin.value == matcher.value:
            continue
        if pin.op != "write" and pin.value in _NAMES_NOBODY:
            continue
        return True
    labels = _field(rule, "labels", dict)
    return any(
        name in OWNER_NAMING and not (name == matcher.label and value == matcher.value)
        for name, value in labels.items()
    )


def _own_alerts(rule: dict[str, Any], matcher: TenantMatcher) -> list[dict[str, Any]]:
    """The rule's pending and firing instances whose labels carry the tenant's exact value."""
    own = []
    for alert in _field(rule, "alerts", list):
        labels = _expect(alert, dict).get("labels")
        if (isinstance(labels, dict) and labels.get(matcher.label) == matcher.value
                and alert.get("state") in _STATES):
            own.append(dict(alert))
    return own


def tenant_rule(rule: dict[str, Any], matcher: TenantMatcher) -> dict[str, Any] | None:
    """What the tenant sees of one rule, or None if it sees nothing of it.

    Shown: an alerting rule, not ``audience: platform``, not naming another tenant, that has
    an instance of the tenant's, or is marked ``audience: tenant``. Only the tenant's own
    instances are kept and the state is recomputed from them. ``lastError`` (it may quote
    another tenant's series) is dropped and ``evaluationTime`` (the cost of every tenant's
    series) is 0. Rule-level annotations are shown only for ``audience: tenant`` rules: no
    operator wrote the others for tenants."""
    if rule.get("type") != "alerting":
        return None
    labels = _field(rule, "labels", dict)
    own = _own_alerts(rule, matcher)  # first: a malformed answer is an error, whatever the rule
    audience = labels.get("audience")
    if audience == "platform" or names_another_tenant(rule, matcher):
        return None
    if not own and audience != "tenant":
        return None
    states = {alert.get("state") for alert in own}
    shown = {key: rule[key] for key in _RULE_FIELDS if key in rule}
    shown["state"] = "firing" if "firing" in states else "pending" if "pending" in states else "inactive"
    shown["annotations"] = dict(_field(rule, "annotations", dict)) if audience == "tenant" else {}
    shown["alerts"] = own
    shown["evaluationTime"] = 0
    return shown


def tenant_rules(answer: dict[str, Any], matcher: TenantMatcher, wanted: RuleQuery) -> dict[str, list[Any]]:
    """/api/v1/rules: the groups as Prometheus sends them, with only the rules (and their
    instances) the tenant may see, then narrowed by ``wanted``; empty groups are dropped.
    Recording rules are never shown."""
    found = _field(_data(answer, dict), "groups", list)
    if wanted.type == "record":
        return {"groups": []}
    out = []
    for group in found:
        group = _expect(group, dict)
        rules = _field(group, "rules", list)
        if (wanted.groups and group.get("name") not in wanted.groups) or (
                wanted.files and group.get("file") not in wanted.files):
            continue
        shown = []
        for rule in rules:
            rule = _expect(rule, dict)
            if wanted.names and rule.get("name") not in wanted.names:
                continue
            seen = tenant_rule(rule, matcher)
            if seen is None:
                continue
            if wanted.exclude_alerts:
                del seen["alerts"]
            shown.append(seen)
        if shown:
            kept = {key: group[key] for key in _GROUP_FIELDS if key in group}
            out.append({**kept, "rules": shown, "evaluationTime": 0})
    return {"groups": out}


def tenant_alerts(answer: dict[str, Any], matcher: TenantMatcher) -> dict[str, list[Any]]:
    """/api/v1/alerts, from a /api/v1/rules answer: every instance of the rules the tenant
    sees there, so both endpoints apply the same rule-level refusals (/api/v1/alerts alone
    carries no expression to check)."""
    rules = tenant_rules(answer, matcher, RuleQuery(type="alert"))
    return {"alerts": [alert for group in rules["groups"] for rule in group["rules"] for alert in rule["alerts"]]}
