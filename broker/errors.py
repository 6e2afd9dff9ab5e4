"""The broker's refinements of tenant_metrics.core.errors; broker/osb.py maps them all to OSB."""

from __future__ import annotations

from tenant_metrics.core.errors import InvalidInput, TenantMetricsError


class PreconditionFailed(InvalidInput):
    """OSB 412: the platform speaks an API version we do not."""


class PayloadTooLarge(InvalidInput):
    """413: the body is larger than MAX_BODY_BYTES."""


class Unprocessable(InvalidInput):
    """OSB 422 with a machine-readable ``error`` code (e.g. MaintenanceInfoConflict)."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error


class NotSupported(TenantMetricsError):
    """501: an OSB endpoint this broker's catalog says it does not offer (GET binding)."""
