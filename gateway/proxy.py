"""The Prometheus HTTP API routes, one handler per endpoint: parse, enforce, rebuild, relay.

Each route names its upstream path as a constant: the client's path never reaches
Prometheus, so no ``..``, ``%2F`` or double-slash trick can turn an allowed route into an
admin one (the same reason prom-label-proxy's strictMux refuses overlapping routes).
Whatever the gateway cannot enforce is refused with 403 in Prometheus's error format
(policy.py). Parameters are read and rebuilt by params.py, queries enforced by
enforce.py, answers relayed by relay.py or filtered by filters.py.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web

from gateway import enforce as enf
from gateway import filters
from gateway import params as p
from gateway.config import GatewaySettings
from gateway.metrics import GatewayMetrics
from gateway.policy import REFUSED_PREFIXES, unrouted
from gateway.relay import CUT_SHORT, TENANT, UPSTREAM_INDEX, Relay, success
from gateway.upstream import Upstreams
from tenant_metrics.core.errors import InvalidInput, MethodNotAllowed, UpstreamError

# The request keys and the refused list are used by app.py and the tests from here.
__all__ = ["CUT_SHORT", "METHODS", "REFUSED_PREFIXES", "TENANT", "UPSTREAM_INDEX", "PrometheusApi"]

METHODS = ("GET", "POST")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class PrometheusApi:
    """The routes; each handler's name is its ``endpoint`` label in metrics and logs."""

    def __init__(self, settings: GatewaySettings, upstreams: Upstreams, metrics: GatewayMetrics) -> None:
        self.settings = settings
        self.upstreams = upstreams
        self.metrics = metrics
        self.relay = Relay(upstreams, settings.scope_org_id, settings.query_timeout_seconds + 5.0)

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
            resource.add_route("HEAD", handler)  # as GET, without the body (see Relay.relay)
            # Any other method on a known path: 405, not the catch-all below.
            resource.add_route("*", _method_not_allowed)
        router.add_route("*", "/api/v1/{rest:.*}", self.refused, name="refused")

    # --- enforcement, timed -------------------------------------------------------------

    def _enforce(self, request: web.Request, query: str) -> str:
        began = time.perf_counter()
        try:
            return enf.enforce_memo(query, request[TENANT].matcher, self.settings.limits)
        finally:
            self.metrics.rewrite_seconds.observe(time.perf_counter() - began)

    def _enforce_match(self, request: web.Request, selectors: list[str]) -> p.Rebuilt:
        """``match[]`` selectors, enforced (none given: the tenant's own selector)."""
        began = time.perf_counter()
        try:
            enforced = enf.enforce_selectors(selectors, request[TENANT].matcher, self.settings.limits)
        finally:
            self.metrics.rewrite_seconds.observe(time.perf_counter() - began)
        return [("match[]", m) for m in enforced]

    def _query(self, request: web.Request, params: p.Params) -> p.Rebuilt:
        return [("query", self._enforce(request, params.single("query", required=True) or ""))]

    def _timeout(self, params: p.Params) -> p.Rebuilt:
        return [("timeout", p.query_timeout(params, self.settings.query_timeout_seconds))]

    # --- query endpoints ----------------------------------------------------------------

    async def query(self, request: web.Request) -> web.StreamResponse:
        params = await p.read_params(request)
        rebuilt = self._query(request, params) + p.instant_time(params) + self._timeout(params)
        return await self.relay.relay(request, "/api/v1/query", rebuilt)

    async def query_range(self, request: web.Request) -> web.StreamResponse:
        params = await p.read_params(request)
        rebuilt = self._query(request, params)
        rebuilt += p.range_window(params, self.settings.max_range_seconds, self.settings.max_points)
        rebuilt += self._timeout(params)
        return await self.relay.relay(request, "/api/v1/query_range", rebuilt)

    async def query_exemplars(self, request: web.Request) -> web.StreamResponse:
        params = await p.read_params(request)
        rebuilt = self._query(request, params) + p.time_range(params)
        return await self.relay.relay(request, "/api/v1/query_exemplars", rebuilt)

    # --- series and label endpoints -----------------------------------------------------

    def _match(self, request: web.Request, params: p.Params) -> p.Rebuilt:
        rebuilt = self._enforce_match(request, params.many("match[]")) + p.time_range(params)
        return rebuilt + p.limit(params)

    async def series(self, request: web.Request) -> web.StreamResponse:
        rebuilt = self._match(request, await p.read_params(request))
        return await self.relay.relay(request, "/api/v1/series", rebuilt)

    async def labels(self, request: web.Request) -> web.StreamResponse:
        rebuilt = self._match(request, await p.read_params(request))
        return await self.relay.relay(request, "/api/v1/labels", rebuilt)

    async def label_values(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if not p.LABEL_NAME.match(name):
            raise InvalidInput(f"invalid label name: {name[:64]!r}")
        rebuilt = self._match(request, await p.read_params(request))
        return await self.relay.relay(request, f"/api/v1/label/{name}/values", rebuilt, method="GET")

    async def federate(self, request: web.Request) -> web.StreamResponse:
        params = await p.read_params(request)
        rebuilt = self._enforce_match(request, params.many("match[]"))
        return await self.relay.relay(request, "/federate", rebuilt, method="GET")

    # --- filtered endpoints (filters.py) ------------------------------------------------

    async def metadata(self, request: web.Request) -> web.StreamResponse:
        """Metadata of the tenant's own targets only.

        Prometheus's /api/v1/metadata merges HELP/TYPE/UNIT per metric name across *all*
        targets, so another tenant's exporter's HELP text would show for a shared name. The
        per-target endpoint, filtered with ``match_target`` on the tenant label, gives only
        what the tenant's own targets say; filters.fold_metadata gives it /api/v1/metadata's shape.
        """
        params = await p.read_params(request)
        rebuilt = [("match_target", self._enforce_match(request, [])[0][1])]
        metric = p.metric_name(params)
        if metric is not None:
            rebuilt.append(("metric", metric))
        limit = p.parse_limit(params.single("limit"))
        answer = await self.relay.fetch_json(request, "/api/v1/targets/metadata", rebuilt)
        return success(filters.fold_metadata(answer, metric, int(limit) if limit is not None else None))

    async def targets(self, request: web.Request) -> web.StreamResponse:
        """Only the tenant's own active targets (filters.tenant_targets)."""
        params = await p.read_params(request)
        state = params.single("state") or "any"
        if state not in ("active", "dropped", "any"):
            raise InvalidInput('invalid parameter "state"')
        if state == "dropped":
            return success({"activeTargets": [], "droppedTargets": []})
        answer = await self.relay.fetch_json(request, "/api/v1/targets", [("state", "active")])
        if answer is None:
            raise UpstreamError("Prometheus could not list targets")
        return success(filters.tenant_targets(answer, request[TENANT].matcher))

    # --- the rest -----------------------------------------------------------------------

    async def buildinfo(self, request: web.Request) -> web.StreamResponse:
        """The version only: what Grafana asks to choose its query features."""
        return await self.relay.relay(request, "/api/v1/status/buildinfo", [], method="GET")

    async def _alerting_rules(self, request: web.Request) -> dict[str, Any]:
        """Prometheus's alerting rules with their instances; only the constant ``type=alert``
        is sent: the tenant's own filters are applied here, after the tenant's filter."""
        answer = await self.relay.fetch_json(request, "/api/v1/rules", [("type", "alert")])
        if answer is None:
            raise UpstreamError("Prometheus could not list rules")
        return cast(dict[str, Any], answer)

    async def rules(self, request: web.Request) -> web.StreamResponse:
        """The alerting rules the tenant may see, with only its own instances (filters.tenant_rules)."""
        wanted = p.rule_query(await p.read_params(request))
        if wanted.type == "record":  # tenants see no recording rule: no need to ask
            return success({"groups": []})
        answer = await self._alerting_rules(request)
        return success(filters.tenant_rules(answer, request[TENANT].matcher, wanted))

    async def alerts(self, request: web.Request) -> web.StreamResponse:
        """The tenant's own pending and firing alerts, of the rules /api/v1/rules shows it."""
        await p.read_params(request)  # a malformed body is a 400 here too
        answer = await self._alerting_rules(request)
        return success(filters.tenant_alerts(answer, request[TENANT].matcher))

    async def refused(self, request: web.Request) -> web.StreamResponse:
        raise unrouted(request.match_info["rest"])


async def _method_not_allowed(request: web.Request) -> web.StreamResponse:
    raise MethodNotAllowed("method not allowed")
