"""Node addresses of each service: its hostname resolves to every node (the resolver is a seam).

A lookup that fails keeps the service's previous addresses, so one DNS hiccup does not drop
a service's targets; a service seen for the first time with no answer simply waits.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sd.aiven import AivenService
from tenant_metrics.core.errors import ConfigError

log = logging.getLogger(__name__)

Resolver = Callable[[str], Sequence[str]]


def system_resolver(host: str) -> list[str]:
    """Every IPv4 address of ``host`` (Aiven publishes one A record per node)."""
    infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def overrides_resolver(path: str, fallback: Resolver = system_resolver) -> Resolver:
    """A JSON file ``{"hostname": ["ip", ...]}`` answered before DNS (demo, tests, split horizon).

    Read once at start; a bad file is a ConfigError naming SD_DNS_OVERRIDES_FILE."""
    try:
        table = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"SD_DNS_OVERRIDES_FILE: cannot read {path}: {exc}") from exc
    if not isinstance(table, dict) or not all(
        isinstance(v, list) and all(isinstance(i, str) for i in v) for v in table.values()
    ):
        raise ConfigError(
            "SD_DNS_OVERRIDES_FILE must hold a JSON object of hostname -> [address, ...]"
        )

    def resolve(host: str) -> Sequence[str]:
        found = table.get(host)
        return list(found) if found is not None else fallback(host)

    return resolve


def resolve_services(
    services: Sequence[AivenService],
    resolver: Resolver,
    previous: Mapping[str, Sequence[str]],
    workers: int = 16,
) -> tuple[dict[str, list[str]], int]:
    """Addresses by service name, and how many lookups failed (old answers kept for those)."""
    todo = [s for s in services if s.host]

    def one(svc: AivenService) -> tuple[str, list[str] | None]:
        try:
            return svc.name, list(resolver(svc.host or ""))
        except (OSError, UnicodeError) as exc:
            log.warning(
                "dns lookup failed",
                extra={"event": "dns_failed", "aiven_service_name": svc.name, "error": str(exc)},
            )
            return svc.name, None

    if workers <= 1 or len(todo) <= 1:
        answers = [one(s) for s in todo]
    else:
        # One task per worker, each resolving a slice: 10,000 futures cost more CPU than the lookups.
        slices = [todo[i::workers] for i in range(workers)]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sd-dns") as pool:
            answers = [
                a for part in pool.map(lambda part: [one(s) for s in part], slices) for a in part
            ]
    out: dict[str, list[str]] = {}
    failures = 0
    for name, ips in answers:
        if ips is None:
            failures += 1
            if name in previous:
                out[name] = list(previous[name])
        elif ips:
            out[name] = ips
    return out, failures
