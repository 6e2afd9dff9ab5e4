"""The gateway's own Prometheus metrics, on a registry passed in (never the global one)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_FAST_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1)


@dataclass(frozen=True, slots=True)
class GatewayMetrics:
    requests: Counter
    request_seconds: Histogram
    upstream_seconds: Histogram
    failovers: Counter
    upstream_active: Gauge
    rewrite_seconds: Histogram
    auth_failures: Counter
    rate_limited: Counter
    auth_lookups: Counter
    auth_refused_early: Counter
    auth_throttled: Counter
    auth_stale_serving: Gauge
    auth_stale_answers: Counter
    sso_signins: Counter
    sso_rechecks: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> GatewayMetrics:
        return cls(
            requests=Counter(
                "tenant_metrics_gateway_requests_total",
                "Requests by endpoint, HTTP status and tenant scope kind.",
                ["endpoint", "status", "scope"],
                registry=registry,
            ),
            request_seconds=Histogram(
                "tenant_metrics_gateway_request_seconds",
                "Time to answer a request (to the first byte of the body), by endpoint.",
                ["endpoint"],
                registry=registry,
            ),
            upstream_seconds=Histogram(
                "tenant_metrics_gateway_upstream_seconds",
                "Time for an upstream Prometheus to answer (headers), by instance index.",
                ["upstream"],
                registry=registry,
            ),
            failovers=Counter(
                "tenant_metrics_gateway_failovers_total",
                "Times the active upstream changed because it failed, by reason.",
                ["reason"],
                registry=registry,
            ),
            upstream_active=Gauge(
                "tenant_metrics_gateway_upstream_active",
                "Index (in PROMETHEUS_URLS) of the upstream now serving queries.",
                registry=registry,
                multiprocess_mode="max",
            ),
            rewrite_seconds=Histogram(
                "tenant_metrics_gateway_rewrite_seconds",
                "Time to parse, enforce and re-check one PromQL query or match[] list.",
                buckets=_FAST_BUCKETS,
                registry=registry,
            ),
            auth_failures=Counter(
                "tenant_metrics_gateway_auth_failures_total",
                "Requests refused for missing or invalid credentials.",
                registry=registry,
            ),
            rate_limited=Counter(
                "tenant_metrics_gateway_rate_limited_total",
                "Requests refused by the per-credential rate limit.",
                ["scope"],
                registry=registry,
            ),
            auth_lookups=Counter(
                "tenant_metrics_gateway_auth_lookups_total",
                "Credential lookups by result: ok, refused (the database answered), error, timeout, "
                "busy (refused at once: every lookup slot is taken while the database is not answering).",
                ["result"],
                registry=registry,
            ),
            auth_refused_early=Counter(
                "tenant_metrics_gateway_auth_refused_without_lookup_total",
                "Credentials refused without asking the database, by reason (shape, unknown_username).",
                ["reason"],
                registry=registry,
            ),
            auth_throttled=Counter(
                "tenant_metrics_gateway_auth_throttled_total",
                "Requests answered 429 because their client address (or username + address) "
                "spent its budget of failed authentications.",
                registry=registry,
            ),
            auth_stale_serving=Gauge(
                "tenant_metrics_gateway_auth_serving_stale",
                "1 while the database cannot be reached and recently verified credentials are "
                "served from memory (stale-if-error), else 0.",
                registry=registry,
                multiprocess_mode="max",
            ),
            auth_stale_answers=Counter(
                "tenant_metrics_gateway_auth_stale_answers_total",
                "Requests admitted on a credential verified earlier, because the database could not be reached.",
                registry=registry,
            ),
            sso_signins=Counter(
                "tenant_metrics_gateway_sso_signins_total",
                "Dashboard sign-ins by result: ok, forbidden (no read permission), refused (bad or "
                "replayed state, a code UAA refused), unavailable (UAA, Cloud Controller or the database).",
                ["result"],
                registry=registry,
            ),
            sso_rechecks=Counter(
                "tenant_metrics_gateway_sso_rechecks_total",
                "Permission rechecks of dashboard sessions by result: ok, forbidden, ended (token no "
                "longer accepted), unavailable (Cloud Controller did not answer; the session is kept "
                "for one more interval).",
                ["result"],
                registry=registry,
            ),
        )
