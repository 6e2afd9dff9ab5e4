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
        )
