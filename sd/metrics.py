"""sd's own metrics, on a registry passed in (tests read them with get_sample_value)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sd.aiven import AivenService


class SdMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        p = "tenant_metrics_sd_"
        self.cycle_duration = Histogram(
            p + "cycle_duration_seconds",
            "Wall time of one discovery cycle.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=registry,
        )
        self.cycles = Counter(
            p + "cycles_total", "Discovery cycles by result.", ["result"], registry=registry
        )
        self.failures = Counter(
            p + "failures_total",
            "Failures by stage and kind.",
            ["stage", "kind"],
            registry=registry,
        )
        self.services = Gauge(
            p + "services",
            "Aiven services seen in the last listing, by type and state.",
            ["type", "state"],
            registry=registry,
        )
        self.integrations_created = Counter(
            p + "integrations_created_total", "Prometheus integrations created.", registry=registry
        )
        self.integrations_failed = Counter(
            p + "integrations_failed_total",
            "Prometheus integration creations that failed.",
            registry=registry,
        )
        self.integrations_backing_off = Gauge(
            p + "integrations_backing_off",
            "Eligible services waiting to retry their integration.",
            registry=registry,
        )
        self.owners_unresolved = Gauge(
            p + "owners_unresolved",
            "Services with a parsable name whose owner is unknown (not scraped).",
            registry=registry,
        )
        self.owners_missing = Gauge(
            p + "owners_missing",
            "Services whose CF instance no longer exists (not scraped).",
            registry=registry,
        )
        self.names_unparsed = Gauge(
            p + "services_unparsed_names",
            "Eligible services whose name is not <prefix>-<guid> (ignored).",
            registry=registry,
        )
        self.targets = Gauge(
            p + "target_groups",
            "Target groups (services) in the current targets.",
            registry=registry,
        )
        self.target_writes = Counter(
            p + "target_writes_total", "Times the targets file was rewritten.", registry=registry
        )
        self.last_success = Gauge(
            p + "last_success_timestamp_seconds",
            "Unix time of the last fully successful cycle.",
            registry=registry,
        )
        self.api_requests = Counter(
            p + "api_requests_total",
            "HTTP requests sent to upstream APIs.",
            ["api"],
            registry=registry,
        )
        self.dns_failures = Counter(
            p + "dns_failures_total", "Service hostname lookups that failed.", registry=registry
        )

        self.drop_withheld = Gauge(
            p + "target_drop_withheld",
            "Target groups a withheld mass drop would remove (0: none withheld).",
            registry=registry,
        )
        self.drop_pending_cycles = Gauge(
            p + "target_drop_pending_cycles",
            "Cycles in a row that proposed the withheld mass drop.",
            registry=registry,
        )
        self.drops_withheld = Counter(
            p + "target_drops_withheld_total",
            "Cycles whose new targets were withheld by the mass-deletion guard.",
            registry=registry,
        )
        self.drops_applied = Counter(
            p + "target_drops_applied_total",
            "Mass drops applied after confirmation, by who confirmed (cycles, operator).",
            ["confirmed_by"],
            registry=registry,
        )

    def observe_services(self, services: Iterable[AivenService]) -> None:
        tally = Tally((s.type, s.state) for s in services)
        self.services.clear()
        for (stype, state), n in tally.items():
            self.services.labels(stype, state).set(n)
