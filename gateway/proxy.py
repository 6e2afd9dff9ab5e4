"""The Prometheus HTTP API routes: enforce, rebuild the upstream request, relay the answer.

Each route names its upstream path as a constant: the client's path never reaches
Prometheus, so no ``..``, ``%2F`` or double-slash trick can turn an allowed route into an
admin one (the same reason prom-label-proxy's strictMux refuses overlapping routes).
Whatever the gateway cannot enforce is refused with 403 in Prometheus's error format.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

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
from tenant_metrics.core.errors import (
    Forbidden,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    UpstreamError,
)

log = logging.getLogger("gateway")
METHODS = ("GET", "POST")
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


TENANT = web.RequestKey("tenant", Tenant)
UPSTREAM_INDEX = web.RequestKey("upstream_index", int)  # which instance answered (for the log)
CUT_SHORT = web.RequestKey("cut_short", bool)  # the answer was cut short after its status
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _success(data: Any) -> web.Response:
    return web.Response(
        body=json.dumps({"status": "success", "data": data}, separators=(",", ":")).encode(),
        status=200,
        content_type="application/json",
    )


class PrometheusApi:
    """The Prometheus HTTP API routes: enforce, rebuild the upstream request, relay the answer."""

    def __init__(self, settings: GatewaySettings, upstreams: Upstreams, metrics: GatewayMetrics) -> None:
        self.settings = settings
        self.upstreams = upstreams
        self.metrics = metrics

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Each route's name is its endpoint label in metrics and logs."""
        table: list[tuple[str, Handler, tuple[str, ...]]] = [
            ("/api/v1/query", self.query, METHODS),
            ("/api/v1/query_range", self.query_range, METHODS),
            ("/api/v1/query_exemplars", self.query_exemplars, METHODS),
            ("/api/v1/series", self.series, METHODS),
            ("/api/v1/labels", self.labels, METHODS),
            ("/api/v1/label/{name}/values", self.label_values, ("GET",)),
            ("/federate", self.federate, ("GET",)),
            ("/api/v1/metadata", self.metadata, ("GET",)),
            ("/api/v1/targets", self.targets, ("GET",)),
            ("/api/v1/status/buildinfo", self.buildinfo, ("GET",)),
            ("/api/v1/rules", self.rules, ("GET",)),
            ("/api/v1/alerts", self.alerts, ("GET",)),
        ]
        for path, handler, methods in table:
            name = handler.__name__
            resource = router.add_resource(path, name=name)
            for method in methods:
                resource.add_route(method, handler)
            resource.add_route("HEAD", handler)  # as GET, without the body (see _relay)
            # Any other method on a known path: 405, not the catch-all below.
            resource.add_route("*", _method_not_allowed)
        router.add_route("*", "/api/v1/{rest:.*}", self.refused, name="refused")

    # --- building blocks ----------------------------------------------------------------

    def _enforce(self, request: web.Request, query: str) -> str:
        began = time.perf_counter()
        try:
            return enf.enforce_memo(query, request[TENANT].matcher, self.settings.limits)
        finally:
            self.metrics.rewrite_seconds.observe(time.perf_counter() - began)

    def _enforce_match(self, request: web.Request, selectors: list[str]) -> list[str]:
        began = time.perf_counter()
        try:
            return enf.enforce_selectors(selectors, request[TENANT].matcher, self.settings.limits)
        finally:
            self.metrics.rewrite_seconds.observe(time.perf_counter() - began)

    def _upstream_headers(self, request: web.Request, compressed: bool = True) -> dict[str, str]:
        """Built from scratch: no client header (X-Scope-OrgID, Cookie, ...) is forwarded."""
        accepted = request.headers.get("Accept-Encoding", "")
        headers = {
            "Accept-Encoding": "gzip" if compressed and "gzip" in accepted.lower() else "identity",
            "User-Agent": "tenant-metrics-gateway",
        }
        scope_org = self.settings.scope_org_id
        if scope_org == "tenant":
            headers["X-Scope-OrgID"] = request[TENANT].value
        elif scope_org:
            headers["X-Scope-OrgID"] = scope_org
        return headers

    async def _forward(self, request: web.Request, path: str, params: list[tuple[str, str]],
                       method: str = "POST", compressed: bool = True) -> UpstreamResponse:
        """Query endpoints are always POSTed upstream, whatever the client used: a form body
        has no length limit, unlike a URL (Prometheus, or a proxy in front of it, may cap the
        request line). Endpoints that only take GET pass ``method="GET"``."""
        answer = await self.upstreams.request(
            method,
            path,
            params,
            headers=self._upstream_headers(request, compressed),
            timeout=self.settings.query_timeout_seconds + 5.0,
        )
        request[UPSTREAM_INDEX] = answer.instance
        return answer

    async def _relay(self, request: web.Request, path: str, params: list[tuple[str, str]],
                     method: str = "POST") -> web.StreamResponse:
        """Stream the upstream's body as it arrives, compression untouched."""
        answer = await self._forward(request, path, params, method)
        headers = {k: v for k in _RELAYED_HEADERS if (v := answer.headers.get(k)) is not None}
        if request.method == "HEAD":
            # No body may follow a HEAD answer (a streamed one would be sent: aiohttp drops
            # only a plain Response's), or the connection's next answer would start with it.
            answer.close()
            headers.pop("Content-Length", None)
            return web.Response(status=answer.status, headers=headers)
        if answer.body is not None:
            answer.close()
            return web.Response(body=answer.body, status=answer.status, headers=headers)
        resp = web.StreamResponse(status=answer.status, headers=headers)
        try:
            await resp.prepare(request)
            async for chunk in answer.chunks():
                await resp.write(chunk)
            await resp.write_eof()
        except OSError as exc:
            # Cut short after the status was sent: the client went away, or the upstream
            # failed. The connection is dropped, so the client sees an incomplete answer,
            # never one that looks complete (a chunked answer's end marker is not sent).
            if not isinstance(exc, ConnectionResetError):
                log.warning("upstream answer cut short",
                            extra={"upstream": answer.instance, "error": str(exc)})
            request[CUT_SHORT] = True
            if request.transport is not None:
                request.transport.abort()
        finally:
            answer.close()
        return resp

    async def _json(self, request: web.Request, path: str, params: list[tuple[str, str]]) -> Any:
        """Read a whole upstream JSON answer for filtering (None if it was not a 200)."""
        answer = await self._forward(request, path, params, method="GET", compressed=False)
        if answer.status != 200:
            answer.close()
            return None
        try:
            data = json.loads(await answer.read())
        except (ValueError, OSError) as exc:
            raise UpstreamError("Prometheus sent a response that is not JSON") from exc
        if not isinstance(data, dict) or data.get("status") != "success":
            raise UpstreamError("Prometheus sent an unexpected response")
        return data

    def _timeout(self, params: Params) -> str:
        ours = self.settings.query_timeout_seconds
        given = params.single("timeout")
        seconds = min(ours, parse_duration(given, "timeout")) if given else ours
        return format_seconds(seconds)

    def _match_request(self, request: web.Request, params: Params) -> list[tuple[str, str]]:
        rebuilt = [("match[]", m) for m in self._enforce_match(request, params.many("match[]"))]
        rebuilt += _time_range(params, required=False)
        limit = parse_limit(params.single("limit"))
        if limit is not None:
            rebuilt.append(("limit", limit))
        return rebuilt

    # --- query endpoints ----------------------------------------------------------------

    async def query(self, request: web.Request) -> web.StreamResponse:
        params = await read_params(request)
        rebuilt = [("query", self._enforce(request, params.single("query", required=True) or ""))]
        at = params.single("time")
        if at:
            rebuilt.append(("time", format_time(parse_time(at, "time"))))
        rebuilt.append(("timeout", self._timeout(params)))
        return await self._relay(request, "/api/v1/query", rebuilt)

    async def query_range(self, request: web.Request) -> web.StreamResponse:
        settings = self.settings
        params = await read_params(request)
        promql = self._enforce(request, params.single("query", required=True) or "")
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
            ("timeout", self._timeout(params)),
        ]
        return await self._relay(request, "/api/v1/query_range", rebuilt)

    async def query_exemplars(self, request: web.Request) -> web.StreamResponse:
        params = await read_params(request)
        rebuilt = [("query", self._enforce(request, params.single("query", required=True) or ""))]
        rebuilt += _time_range(params, required=False)
        return await self._relay(request, "/api/v1/query_exemplars", rebuilt)

    # --- metadata endpoints -------------------------------------------------------------

    async def series(self, request: web.Request) -> web.StreamResponse:
        rebuilt = self._match_request(request, await read_params(request))
        return await self._relay(request, "/api/v1/series", rebuilt)

    async def labels(self, request: web.Request) -> web.StreamResponse:
        rebuilt = self._match_request(request, await read_params(request))
        return await self._relay(request, "/api/v1/labels", rebuilt)

    async def label_values(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if not LABEL_NAME.match(name):
            raise InvalidInput(f"invalid label name: {name[:64]!r}")
        rebuilt = self._match_request(request, await read_params(request))
        return await self._relay(request, f"/api/v1/label/{name}/values", rebuilt, method="GET")

    async def federate(self, request: web.Request) -> web.StreamResponse:
        params = await read_params(request)
        rebuilt = [("match[]", m) for m in self._enforce_match(request, params.many("match[]"))]
        return await self._relay(request, "/federate", rebuilt, method="GET")

    async def metadata(self, request: web.Request) -> web.StreamResponse:
        """Metadata of the tenant's own targets only.

        Prometheus's /api/v1/metadata merges HELP/TYPE/UNIT per metric name across *all*
        targets, so another tenant's exporter's HELP text would show for a shared name. The
        per-target endpoint, filtered with ``match_target`` on the tenant label, gives only
        what the tenant's own targets say; it is folded into /api/v1/metadata's shape here.
        """
        params = await read_params(request)
        rebuilt = [("match_target", self._enforce_match(request, [])[0])]
        metric = params.single("metric")
        if metric is not None:
            if not enf.METRIC_NAME.match(metric):
                raise InvalidInput('invalid parameter "metric"')
            rebuilt.append(("metric", metric))
        limit = parse_limit(params.single("limit"))
        data = await self._json(request, "/api/v1/targets/metadata", rebuilt)
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

    async def targets(self, request: web.Request) -> web.StreamResponse:
        """Only the tenant's own active targets; dropped targets are never shown (their
        discovered labels are unfiltered service-discovery data)."""
        tenant = request[TENANT]
        params = await read_params(request)
        state = params.single("state") or "any"
        if state not in ("active", "dropped", "any"):
            raise InvalidInput('invalid parameter "state"')
        active: list[Any] = []
        if state != "dropped":
            data = await self._json(request, "/api/v1/targets", [("state", "active")])
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

    async def buildinfo(self, request: web.Request) -> web.StreamResponse:
        """The version only: what Grafana asks to choose its query features."""
        return await self._relay(request, "/api/v1/status/buildinfo", [], method="GET")

    async def rules(self, request: web.Request) -> web.StreamResponse:
        """Tenants own no recording or alerting rules: their filtered view is empty.

        The platform's rules are not shown: their expressions and annotations may name
        other tenants."""
        return _success({"groups": []})

    async def alerts(self, request: web.Request) -> web.StreamResponse:
        """Empty for the same reason as /rules: no alert belongs to a tenant."""
        return _success({"alerts": []})

    async def refused(self, request: web.Request) -> web.StreamResponse:
        rest = request.match_info["rest"]
        if rest.startswith(REFUSED_PREFIXES):
            prefix = next(p for p in REFUSED_PREFIXES if rest.startswith(p))
            raise Forbidden(f"/api/v1/{prefix.rstrip('/')} is not available through the tenant gateway")
        raise NotFound("unknown API endpoint")


async def _method_not_allowed(request: web.Request) -> web.StreamResponse:
    raise MethodNotAllowed("method not allowed")


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
