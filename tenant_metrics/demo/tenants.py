"""The demo's two example tenants: their orgs and spaces, Aiven services and metrics instances."""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "demo"  # AIVEN_SERVICE_PREFIX
NODE_ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


@dataclass(frozen=True, slots=True)
class Tenant:
    """One example tenant: its org and space, its Aiven service and its metrics instance."""

    label: str
    org_guid: str
    org_name: str
    space_guid: str
    space_name: str
    plan: str
    aiven_instance_guid: str
    aiven_instance_name: str
    metrics_instance_guid: str
    nodes: tuple[str, ...]
    service_type: str = "opensearch"

    @property
    def aiven_name(self) -> str:
        return f"{PREFIX}-{self.aiven_instance_guid}"

    @property
    def metrics_instance_name(self) -> str:
        return f"{self.label}-metrics"

    @property
    def letter(self) -> str:
        """"A" for "tenant-a"."""
        return self.label.removeprefix("tenant-").upper()

    @property
    def title(self) -> str:
        """How the printed guide names it: "tenant A"."""
        return f"tenant {self.letter}"

TENANTS = (
    Tenant("tenant-a", "0a000000-0000-4000-8000-00000000000a", "dept-of-examples",
           "5a000000-0000-4000-8000-00000000000a", "production", "space",
           "1a000000-0000-4000-8000-00000000000a", "orders-search",
           "9a000000-0000-4000-8000-00000000000a", NODE_ADDRESSES[0:2]),
    Tenant("tenant-b", "0b000000-0000-4000-8000-00000000000b", "agency-of-samples",
           "5b000000-0000-4000-8000-00000000000b", "staging", "org",
           "1b000000-0000-4000-8000-00000000000b", "logs",
           "9b000000-0000-4000-8000-00000000000b", NODE_ADDRESSES[2:3], "elasticsearch"),
)
