"""The broker's own Prometheus metrics, on a registry passed in (multiprocess-aware)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class BrokerMetrics:
    """Requests by endpoint and status, and their latency.

    Under gunicorn with several workers each worker has its own counters; with
    PROMETHEUS_MULTIPROC_DIR set (broker/gunicorn_conf.py sets it), values live in files
    there and /metrics sums every worker's, so any worker answers for all.
    """

    def __init__(self, registry: CollectorRegistry, multiproc_dir: str | None = None) -> None:
        self.registry = registry
        self.multiproc_dir = multiproc_dir
        self.requests = Counter(
            "tenant_metrics_broker_requests_total",
            "OSB and operational HTTP requests answered, by endpoint, method and status.",
            ["endpoint", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "tenant_metrics_broker_request_duration_seconds",
            "Time to answer a request, by endpoint.",
            ["endpoint"],
            buckets=_BUCKETS,
            registry=registry,
        )

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        if self.multiproc_dir:
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged, path=self.multiproc_dir)  # type: ignore[no-untyped-call]
            return generate_latest(merged), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
