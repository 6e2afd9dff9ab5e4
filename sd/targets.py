"""Pure: Aiven services + owners + node addresses -> Prometheus file_sd target groups.

One group per service, one target per node (``ip:port``: the service hostname resolves
to every node), labelled as DESIGN.md says. Deterministic: groups sorted by service
name, targets by address. A service without a resolved owner gets no group at all, so
no tenant ever sees it (an operator-only job can scrape those separately).
"""

from __future__ import annotations

import socket
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sd.aiven import AivenService
from sd.owners import Owner
from tenant_metrics.core import labels as L

NOT_SCRAPED_STATES = frozenset({"POWEROFF"})


@dataclass(frozen=True, slots=True)
class TargetGroup:
    targets: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]

    def to_json(self) -> dict[str, Any]:
        return {"targets": list(self.targets), "labels": dict(self.labels)}


_SERVICE_LABEL_AT = L.TARGET_LABELS.index(L.AIVEN_SERVICE_NAME)


def group_key(group: TargetGroup) -> str:
    """A group's identity across cycles (the mass-deletion guard compares these)."""
    labels = group.labels
    if len(labels) > _SERVICE_LABEL_AT and labels[_SERVICE_LABEL_AT][0] == L.AIVEN_SERVICE_NAME:
        return labels[_SERVICE_LABEL_AT][1]  # where target_labels puts it: no scan
    for name, value in labels:
        if name == L.AIVEN_SERVICE_NAME:
            return value
    return ",".join(group.targets)


def is_scrapable(
    service: AivenService,
    endpoint_id: str,
    eligible_types: Collection[str],
    integrated_now: Collection[str] = (),
) -> bool:
    """Eligible type, not powered off, and integrated with our endpoint (or just now)."""
    return (
        service.type in eligible_types
        and service.state not in NOT_SCRAPED_STATES
        and (service.name in integrated_now or service.has_prometheus_integration(endpoint_id))
    )


def target_labels(service: AivenService, owner: Owner) -> tuple[tuple[str, str], ...]:
    values = {
        L.CF_ORGANIZATION_GUID: owner.organization_guid,
        L.CF_SPACE_GUID: owner.space_guid,
        L.CF_SERVICE_INSTANCE_GUID: owner.instance_guid,
        L.CF_ORGANIZATION_NAME: owner.organization_name,
        L.CF_SPACE_NAME: owner.space_name,
        L.CF_SERVICE_INSTANCE_NAME: owner.instance_name,
        L.AIVEN_SERVICE_NAME: service.name,
        L.AIVEN_SERVICE_TYPE: service.type,
        L.AIVEN_PLAN: service.plan,
        L.AIVEN_CLOUD: service.cloud,
    }
    return tuple((name, values[name]) for name in L.TARGET_LABELS)


def _address_key(address: str) -> tuple[int, bytes, str]:
    """Numeric order, IPv4 before IPv6 (inet_pton: ~10x cheaper than ipaddress at 30,000 nodes)."""
    for family, rank in ((socket.AF_INET, 4), (socket.AF_INET6, 6)):
        try:
            return (rank, socket.inet_pton(family, address), address)
        except OSError:
            continue
    return (9, b"", address)


def _target(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def build_targets(
    services: Iterable[AivenService],
    owners: Mapping[str, Owner],
    resolved_ips: Mapping[str, Sequence[str]],
    *,
    port: int,
    endpoint_id: str,
    eligible_types: Collection[str],
    integrated_now: Collection[str] = (),
) -> list[TargetGroup]:
    """``resolved_ips`` is keyed by service name; a service with no addresses gets no group."""
    groups = []
    for service in sorted(services, key=lambda s: s.name):
        if not is_scrapable(service, endpoint_id, eligible_types, integrated_now):
            continue
        owner = owners.get(service.name)
        addresses = sorted(set(resolved_ips.get(service.name, ())), key=_address_key)
        if owner is None or not addresses:
            continue
        groups.append(
            TargetGroup(tuple(_target(a, port) for a in addresses), target_labels(service, owner))
        )
    return groups
