"""Free TCP ports on loopback."""

from __future__ import annotations

import socket
from collections.abc import Sequence

from tenant_metrics.world.errors import WorldError


def free_port(addresses: Sequence[str] = ("127.0.0.1",), attempts: int = 100) -> int:
    """A port nothing listens on at every one of ``addresses`` (exporters share one port
    across 127.0.0.x, as Aiven's nodes do). Free now, not reserved: bind it soon."""
    for _ in range(attempts):
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port = int(probe.getsockname()[1])
        try:
            for address in addresses[1:]:
                with socket.socket() as s:
                    s.bind((address, port))
        except OSError:
            continue
        return port
    raise WorldError(f"no port free on every one of {', '.join(addresses)}")
