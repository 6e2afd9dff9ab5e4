"""Node addresses of each service: its hostname resolves to every node (the resolver is a seam).

A lookup that fails keeps the service's previous addresses, so one DNS hiccup does not drop
a service's targets; a service seen for the first time with no answer simply waits.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from sd.aiven import AivenService

log = logging.getLogger(__name__)

Resolver = Callable[[str], Sequence[str]]


def system_resolver(host: str) -> list[str]:
    """Every IPv4 address of ``host`` (Aiven publishes one A record per node)."""
    infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def resolve_services(services: Sequence[AivenService], resolver: Resolver,
                     previous: Mapping[str, Sequence[str]], workers: int = 16) -> tuple[dict[str, list[str]], int]:
    """Addresses by service name, and how many lookups failed (old answers kept for those)."""
    todo = [s for s in services if s.host]

    def one(svc: AivenService) -> tuple[str, list[str] | None]:
        try:
            return svc.name, list(resolver(svc.host or ""))
        except (OSError, UnicodeError) as exc:
            log.warning("dns lookup failed", extra={"event": "dns_failed", "aiven_service_name": svc.name,
                                                    "error": str(exc)})
            return svc.name, None

    if workers <= 1 or len(todo) <= 1:
        answers = [one(s) for s in todo]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sd-dns") as pool:
            answers = list(pool.map(one, todo))
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
