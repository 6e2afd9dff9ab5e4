"""The client's address, for per-client budgets: the peer, or X-Forwarded-For from a trusted router.

Behind Cloud Foundry's router every request comes from a router address, and the router
appends the address it saw to X-Forwarded-For. The header is believed only when the peer
is a configured router (GATEWAY_TRUSTED_PROXIES), and then only as far as trusted hops go:
walking from the right, the first address that is not a trusted router is the client
(entries to its left were written by the client and may be anything).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _trusted(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    return any(ip in net for net in networks if ip.version == net.version)


def client_address(peer: str | None, forwarded_for: Sequence[str], networks: Sequence[Network]) -> str:
    """The right-most untrusted address: ``peer`` unless it is a trusted router."""
    client = peer or "unknown"
    if not networks or not _trusted(client, networks):
        return client
    hops = [h.strip() for value in forwarded_for for h in value.split(",")]
    for hop in reversed(hops):
        if not hop:
            continue
        if not _trusted(hop, networks):
            return hop[:64]
        client = hop
    return client
