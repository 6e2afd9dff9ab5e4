"""The Prometheus HTTP API routes: enforce, rebuild the upstream request, relay the answer.

Each route names its upstream path as a constant: the client's path never reaches
Prometheus, so no ``..``, ``%2F`` or double-slash trick can turn an allowed route into an
admin one (the same reason prom-label-proxy's strictMux refuses overlapping routes).
Whatever the gateway cannot enforce is refused with 403 in Prometheus's error format.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, g, request

from common.errors import Forbidden, InvalidInput, NotFound, UpstreamError
from gateway import enforce as enf
from gateway.auth import Tenant
from gateway.config import GatewaySettings
from gateway.metrics import GatewayMetrics
from gateway.params import (
    LABEL_NAME,
    LimitExceeded,
    Params,
    format_seconds,
    format_time,
    parse_duration,
    parse_limit,
    parse_time,
    read_params,
)
from gateway.upstream import UpstreamResponse, Upstreams

api = Blueprint("prometheus_api", __name__)
METHODS = ["GET", "POST"]
CHUNK = 64 * 1024
# Response headers relayed from Prometheus; everything else (Set-Cookie, Server, ...) is not.
# Content-Length is right because the body is relayed byte for byte (never decompressed).
_RELAYED_HEADERS = ("Content-Type", "Content-Encoding", "Content-Length", "Warning")

# Paths Prometheus serves that the gateway refuses: each could read or change data
# across tenants (admin, remote read/write, OTLP), or shows the server's internals
# (config may hold credentials; flags, TSDB status and runtime info list other tenants'
# label values and cardinalities).
REFUSED_PREFIXES = (
    "admin/",
    "read",
    "write",
    "otlp/",
    "status/",
    "alertmanagers",
    "targets/metadata",
    "notifications",
    "format_query",
    "parse_query",
)


@dataclass(frozen=True, slots=True)
class Gateway:
    """What the routes need, built once by create_app."""

    settings: GatewaySettings
    upstreams: Upstreams
    metrics: GatewayMetrics


def _gw() -> Gateway:
    gateway: Gateway = current_app.extensions["tenant_gateway"]
    return gateway


def _tenant() -> Tenant:
    tenant: Tenant = g.tenant
    return tenant


def _enforce(query: str) -> str:
    gw = _gw()
    began = time.perf_counter()
    try:
        return enf.enforce(query, _tenant().matcher, gw.settings.limits)
    finally:
        gw.metrics.rewrite_seconds.observe(time.perf_counter() - began)


def _enforce_match(selectors: list[str]) -> list[str]:
    gw = _gw()
    began = time.perf_counter()
    try:
        return enf.enforce_selectors(selectors, _tenant().matcher, gw.settings.limits)
    finally:
        gw.metrics.rewrite_seconds.observe(time.perf_counter() - began)


def _upstream_headers() -> dict[str, str]:
    """Built from scratch: no client header (X-Scope-OrgID, Cookie, ...) is forwarded."""
    accepted = request.headers.get("Accept-Encoding", "")
    headers = {
        "Accept-Encoding": "gzip" if "gzip" in accepted.lower() else "identity",
        "User-Agent": "tenant-metrics-gateway",
    }
    scope_org = _gw().settings.scope_org_id
    if scope_org == "tenant":
        headers["X-Scope-OrgID"] = _tenant().value
    elif scope_org:
        headers["X-Scope-OrgID"] = scope_org
    return headers


def _forward(path: str, params: list[tuple[str, str]], method: str = "POST") -> UpstreamResponse:
    """Query endpoints are always POSTed upstream, whatever the client used: a form body
    has no length limit, unlike a URL (Prometheus, or a proxy in front of it, may cap the
    request line). Endpoints that only take GET pass ``method="GET"``."""
    gw = _gw()
    return gw.upstreams.request(
        method,
        path,
        params,
        headers=_upstream_headers(),
        timeout=gw.settings.query_timeout_seconds + 5.0,
    )


def _relay(answer: UpstreamResponse) -> Response:
    """Stream the upstream's body as it arrives, compression untouched."""
    headers = {k: v for k in _RELAYED_HEADERS if (v := answer.headers.get(k)) is not None}
    g.upstream_index = answer.instance
    return Response(answer.stream(CHUNK), status=answer.status, headers=headers, direct_passthrough=True)


def _json(answer: UpstreamResponse) -> Any:
    """Read a whole upstream JSON answer (decompressed) for filtering."""
    if answer.status != 200:
        answer.close()
        return None
    try:
        data = json.loads(answer.read())
    except (ValueError, OSError) as exc:
        raise UpstreamError("Prometheus sent a response that is not JSON") from exc
    if not isinstance(data, dict) or data.get("status") != "success":
        raise UpstreamError("Prometheus sent an unexpected response")
    return data


def _success(data: Any) -> Response:
    return Response(
        json.dumps({"status": "success", "data": data}, separators=(",", ":")),
        status=200,
        mimetype="application/json",
    )


def _timeout(params: Params) -> str:
    ours = _gw().settings.query_timeout_seconds
    given = params.single("timeout")
    seconds = min(ours, parse_duration(given, "timeout")) if given else ours
    return format_seconds(seconds)


def _time_range(params: Params, required: bool) -> list[tuple[str, str]]:
    out = []
    start = params.single("start", required=required)
    end = params.single("end", required=required)
    start_t = parse_time(start, "start") if start else None
    end_t = parse_time(end, "end") if end else None
    if start_t is not None and end_t is not None and end_t < start_t:
        raise InvalidInput('invalid parameter "end": end timestamp must not be before start time')
    if start_t is not None:
        out.append(("start", format_time(start_t)))
    if end_t is not None:
        out.append(("end", format_time(end_t)))
    return out


# --- query endpoints ---------------------------------------------------------------


@api.route("/api/v1/query", methods=METHODS, endpoint="query")
def query() -> Response:
    params = read_params(request)
    rebuilt = [("query", _enforce(params.single("query", required=True) or ""))]
    at = params.single("time")
    if at:
        rebuilt.append(("time", format_time(parse_time(at, "time"))))
    rebuilt.append(("timeout", _timeout(params)))
    return _relay(_forward("/api/v1/query", rebuilt))


@api.route("/api/v1/query_range", methods=METHODS, endpoint="query_range")
def query_range() -> Response:
    settings = _gw().settings
    params = read_params(request)
    promql = _enforce(params.single("query", required=True) or "")
    start = parse_time(params.single("start", required=True) or "", "start")
    end = parse_time(params.single("end", required=True) or "", "end")
    step = parse_duration(params.single("step", required=True) or "", "step")
    if end < start:
        raise InvalidInput('invalid parameter "end": end timestamp must not be before start time')
    if end - start > settings.max_range_seconds:
        raise LimitExceeded(
            f"query range is longer than this gateway allows ({settings.max_range_seconds}s)"
        )
    if (end - start) / step + 1 > settings.max_points:
        raise InvalidInput(
            f"exceeded maximum resolution of {settings.max_points} points per timeseries. "
            "Try decreasing the query resolution (?step=XX)"
        )
    rebuilt = [
        ("query", promql),
        ("start", format_time(start)),
        ("end", format_time(end)),
        ("step", format_seconds(step)),
        ("timeout", _timeout(params)),
    ]
    return _relay(_forward("/api/v1/query_range", rebuilt))


@api.route("/api/v1/query_exemplars", methods=METHODS, endpoint="query_exemplars")
def query_exemplars() -> Response:
    params = read_params(request)
    rebuilt = [("query", _enforce(params.single("query", required=True) or ""))]
    rebuilt += _time_range(params, required=False)
    return _relay(_forward("/api/v1/query_exemplars", rebuilt))


# --- metadata endpoints --------------------------------------------------------------


def _match_request(params: Params) -> list[tuple[str, str]]:
    rebuilt = [("match[]", m) for m in _enforce_match(params.many("match[]"))]
    rebuilt += _time_range(params, required=False)
    limit = parse_limit(params.single("limit"))
    if limit is not None:
        rebuilt.append(("limit", limit))
    return rebuilt


@api.route("/api/v1/series", methods=METHODS, endpoint="series")
def series() -> Response:
    return _relay(_forward("/api/v1/series", _match_request(read_params(request))))


@api.route("/api/v1/labels", methods=METHODS, endpoint="labels")
def labels() -> Response:
    return _relay(_forward("/api/v1/labels", _match_request(read_params(request))))


@api.route("/api/v1/label/<name>/values", methods=["GET"], endpoint="label_values")
def label_values(name: str) -> Response:
    if not LABEL_NAME.match(name):
        raise InvalidInput(f"invalid label name: {name[:64]!r}")
    rebuilt = _match_request(read_params(request))
    return _relay(_forward(f"/api/v1/label/{name}/values", rebuilt, method="GET"))


@api.route("/federate", methods=["GET"], endpoint="federate")
def federate() -> Response:
    params = read_params(request)
    return _relay(_forward("/federate", [("match[]", m) for m in _enforce_match(params.many("match[]"))], method="GET"))


@api.route("/api/v1/metadata", methods=["GET"], endpoint="metadata")
def metadata() -> Response:
    """Metadata of the tenant's own targets only.

    Prometheus's /api/v1/metadata merges HELP/TYPE/UNIT per metric name across *all*
    targets, so another tenant's exporter's HELP text would show for a shared name. The
    per-target endpoint, filtered with ``match_target`` on the tenant label, gives only
    what the tenant's own targets say; it is folded into /api/v1/metadata's shape here.
    """
    params = read_params(request)
    rebuilt = [("match_target", _enforce_match([])[0])]
    metric = params.single("metric")
    if metric is not None:
        if not enf.METRIC_NAME.match(metric):
            raise InvalidInput('invalid parameter "metric"')
        rebuilt.append(("metric", metric))
    limit = parse_limit(params.single("limit"))
    data = _json(_forward("/api/v1/targets/metadata", rebuilt, method="GET"))
    merged: dict[str, list[dict[str, str]]] = {}
    for entry in (data or {}).get("data") or []:
        # With ?metric=, Prometheus leaves "metric" out of each entry.
        name = entry.get("metric", metric) if isinstance(entry, dict) else None
        if not isinstance(name, str):
            continue
        item = {k: str(entry.get(k, "")) for k in ("type", "help", "unit")}
        seen = merged.setdefault(name, [])
        if item not in seen:
            seen.append(item)
    if limit is not None and int(limit) > 0:
        merged = dict(list(merged.items())[: int(limit)])
    return _success(merged)


@api.route("/api/v1/targets", methods=["GET"], endpoint="targets")
def targets() -> Response:
    """Only the tenant's own active targets; dropped targets are never shown (their
    discovered labels are unfiltered service-discovery data)."""
    tenant = _tenant()
    params = read_params(request)
    state = params.single("state") or "any"
    if state not in ("active", "dropped", "any"):
        raise InvalidInput('invalid parameter "state"')
    active: list[Any] = []
    if state != "dropped":
        data = _json(_forward("/api/v1/targets", [("state", "active")], method="GET"))
        if data is None:
            raise UpstreamError("Prometheus could not list targets")
        found = (data.get("data") or {}).get("activeTargets") or []
        label = tenant.scope.label
        for target in found:
            labels_ = target.get("labels") if isinstance(target, dict) else None
            if isinstance(labels_, dict) and labels_.get(label) == tenant.value:
                kept = {k: v for k, v in target.items() if k != "discoveredLabels"}
                kept["discoveredLabels"] = {}
                active.append(kept)
    return _success({"activeTargets": active, "droppedTargets": []})


@api.route("/api/v1/status/buildinfo", methods=["GET"], endpoint="buildinfo")
def buildinfo() -> Response:
    """The version only: what Grafana asks to choose its query features."""
    return _relay(_forward("/api/v1/status/buildinfo", [], method="GET"))


@api.route("/api/v1/rules", methods=["GET"], endpoint="rules")
def rules() -> Response:
    """Tenants own no recording or alerting rules: their filtered view is empty.

    The platform's rules are not shown: their expressions and annotations may name
    other tenants."""
    return _success({"groups": []})


@api.route("/api/v1/alerts", methods=["GET"], endpoint="alerts")
def alerts() -> Response:
    """Empty for the same reason as /rules: no alert belongs to a tenant."""
    return _success({"alerts": []})


@api.route("/api/v1/<path:rest>", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], endpoint="refused")
def refused(rest: str) -> Response:
    if rest.startswith(REFUSED_PREFIXES):
        prefix = next(p for p in REFUSED_PREFIXES if rest.startswith(p))
        raise Forbidden(f"/api/v1/{prefix.rstrip('/')} is not available through the tenant gateway")
    raise NotFound("unknown API endpoint")
