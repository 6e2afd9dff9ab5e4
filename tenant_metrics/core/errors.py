"""One error hierarchy for the whole project; each protocol maps it to HTTP in one place.

    TenantMetricsError            str(e) is safe to show a client: no secrets, no internals
    ├── InvalidInput              OSB 400/422, Prometheus 400 bad_data
    ├── NotFound                  OSB 404 on GET, 410 on DELETE
    ├── Conflict                  OSB 409
    ├── Unauthenticated           401 + WWW-Authenticate
    ├── Forbidden                 403: an endpoint the gateway cannot enforce
    ├── TooManyRequests           429 (retry_after seconds)
    ├── ConfigError               bad settings, found before anything starts
    └── UpstreamError             Aiven / Cloud Controller / Prometheus / the database
        ├── UpstreamTimeout
        └── RateLimited           the upstream said 429 (retry_after seconds)
"""

from __future__ import annotations


class TenantMetricsError(Exception):
    """Base class. ``str(e)`` is safe to show a client."""


class InvalidInput(TenantMetricsError):
    pass


class NotFound(TenantMetricsError):
    pass


class MethodNotAllowed(TenantMetricsError):
    pass


class Conflict(TenantMetricsError):
    pass


class Unauthenticated(TenantMetricsError):
    pass


class Forbidden(TenantMetricsError):
    pass


class TooManyRequests(TenantMetricsError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConfigError(TenantMetricsError):
    """Bad settings; ``problems`` lists each one when several were found in one reading."""

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (message,)


class UpstreamError(TenantMetricsError):
    pass


class UpstreamTimeout(UpstreamError):
    pass


class RateLimited(UpstreamError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
