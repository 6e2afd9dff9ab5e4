"""What goes wrong while starting a world: a process exits or something is never ready."""

from __future__ import annotations

from tenant_metrics.core.errors import TenantMetricsError


class WorldError(TenantMetricsError):
    """A world could not be started (a port, a process, a config)."""


class NotReady(WorldError, TimeoutError):
    """Something was not ready in time; also a TimeoutError, for callers that wait on several things."""
