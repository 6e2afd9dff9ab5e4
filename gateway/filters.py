"""What a tenant may see of Prometheus answers that label enforcement cannot narrow.

Pure functions over a parsed upstream answer (Prometheus's ``{"status": "success",
"data": ...}`` envelope, already checked by ``Relay.fetch_json``) and the tenant's
matcher; each returns the ``data`` the gateway answers with. An answer whose ``data`` is
not of the shape Prometheus sends is an UpstreamError, never a 500.
"""

from __future__ import annotations

from typing import Any

from gateway.enforce import TenantMatcher
from tenant_metrics.core.errors import UpstreamError

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
