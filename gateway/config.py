"""The gateway's settings, read once from the environment by a pure ``from_env``."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from gateway.enforce import QueryLimits
from gateway.sso.settings import SsoSettings, sso_settings
from tenant_metrics.core import config as c
from tenant_metrics.core.errors import ConfigError
from tenant_metrics.core.httpauth import Access, metrics_access

DEFAULT_PORT = 8090


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    prometheus_urls: tuple[str, ...]
    database_url: str
    port: int = DEFAULT_PORT
    # How long a verified credential is trusted without asking the DB again. At most 1 s,
    # so an unbind or deprovision takes effect within a second.
    auth_cache_seconds: float = 1.0
    # Per-credential token bucket: sustained requests per second, and burst size.
    rate_limit_per_second: float = 20.0
    rate_limit_burst: int = 40
    query_timeout_seconds: float = 30.0
    connect_timeout_seconds: float = 2.0
    max_range_seconds: int = 32 * 24 * 3600
    max_points: int = 11000  # Prometheus's own limit per series in a range query
    max_query_length: int = 16384
    max_query_depth: int = 64
    max_query_operators: int = 128
    # For Mimir/Cortex (multi-tenant backends): send X-Scope-OrgID. "tenant" sends the
    # tenant's guid (the enforced label value); any other value is sent as it is.
    scope_org_id: str | None = None
    health_check_seconds: float = 5.0
    public_url: str | None = None
    # --- failure modes (docs/gateway.md, "Failure modes") ---
    # Database unreachable: a credential verified within this many seconds keeps working
    # (stale-if-error); 0 turns it off. Each lookup waits at most lookup_timeout seconds.
    auth_stale_if_error_seconds: float = 300.0
    auth_lookup_timeout_seconds: float = 3.0
    auth_max_lookups: int = 4
    # Credential floods: refused lookups allowed per client address (and per username +
    # address) per second, with a burst, before 429 without asking the database. Per worker.
    auth_failures_per_second: float = 5.0
    auth_failure_burst: int = 20
    auth_user_failures_per_second: float = 1.0
    auth_user_failure_burst: int = 10
    # Addresses of the routers in front (Cloud Foundry's gorouter): X-Forwarded-For is
    # believed only from these.
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # Stalled upstream: no response head within ttfb seconds -> probe /-/ready with
    # probe_timeout; a failed probe fails the request over. The probe also runs in the
    # background on the active instance every health_check_seconds.
    upstream_ttfb_timeout_seconds: float = 2.0
    upstream_probe_timeout_seconds: float = 1.0

    # The database URL with its timeouts (tenant_metrics.core.config.DatabaseSettings);
    # built from ``database_url`` with the default timeouts when not given.
    database: c.DatabaseSettings = field(default=None, repr=False)  # type: ignore[assignment]

    # Who may read /metrics: METRICS_USERNAME/METRICS_PASSWORD (or METRICS_BEARER_TOKEN);
    # without them open off Cloud Foundry and not served (404) on it (core/httpauth.py).
    metrics: Access = field(default_factory=Access)
    # Dashboard single sign-on (DASHBOARD_CLIENT_ID and friends); None when off.
    sso: SsoSettings | None = None

    def __post_init__(self) -> None:
        if self.database is None:
            object.__setattr__(self, "database", c.DatabaseSettings(self.database_url))
        elif self.database.url != self.database_url:
            raise ValueError("GatewaySettings: database.url and database_url differ")

    @property
    def limits(self) -> QueryLimits:
        return QueryLimits(
            self.max_query_length, self.max_query_depth, self.max_query_operators, self.max_range_seconds
        )


def _urls(env: Mapping[str, str]) -> tuple[str, ...]:
    urls = c.get_list(env, "PROMETHEUS_URLS")
    if not urls:
        raise ConfigError("PROMETHEUS_URLS is required (comma-separated, the first is the primary)")
    out = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"PROMETHEUS_URLS: not an http(s) URL: {url!r}")
        if parts.query or parts.fragment:
            raise ConfigError(f"PROMETHEUS_URLS: must not carry a query or fragment: {url!r}")
        out.append(url.rstrip("/"))
    return tuple(out)


def _networks(env: Mapping[str, str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    out = []
    for item in c.get_list(env, "GATEWAY_TRUSTED_PROXIES"):
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ConfigError(f"GATEWAY_TRUSTED_PROXIES: not an address or CIDR: {item!r}") from exc
    return tuple(out)


def from_env(env: Mapping[str, str]) -> GatewaySettings:
    """Every gateway setting; one ConfigError naming every one that is wrong or missing."""
    p = c.Problems()
    cache = p.value(c.get_float, env, "GATEWAY_AUTH_CACHE_SECONDS", 1.0, default=1.0)
    if cache > 1.0:
        p.add("GATEWAY_AUTH_CACHE_SECONDS must be at most 1 (revocation within a second)")
    rate = p.value(c.get_float, env, "GATEWAY_RATE_LIMIT_PER_SECOND", 20.0, default=20.0)
    if rate <= 0:
        p.add("GATEWAY_RATE_LIMIT_PER_SECOND must be greater than 0")
    timeout = p.value(c.get_float, env, "GATEWAY_QUERY_TIMEOUT_SECONDS", 30.0, default=30.0)
    if timeout <= 0:
        p.add("GATEWAY_QUERY_TIMEOUT_SECONDS must be greater than 0")
    scope_org = env.get("GATEWAY_SCOPE_ORG_ID", "").strip() or None
    database = p.value(c.DatabaseSettings.from_env, env, default=c.DatabaseSettings(""))
    settings = GatewaySettings(
        prometheus_urls=p.value(_urls, env, default=()),
        database_url=database.url,
        database=database,
        port=p.value(c.port, env, DEFAULT_PORT, default=DEFAULT_PORT),
        auth_cache_seconds=cache,
        rate_limit_per_second=rate,
        rate_limit_burst=p.value(c.get_int, env, "GATEWAY_RATE_LIMIT_BURST", 40, minimum=1, default=40),
        query_timeout_seconds=timeout,
        connect_timeout_seconds=p.value(
            c.get_float, env, "GATEWAY_CONNECT_TIMEOUT_SECONDS", 2.0, minimum=0.1, default=2.0),
        max_range_seconds=p.value(
            c.get_int, env, "GATEWAY_MAX_RANGE_SECONDS", 32 * 24 * 3600, minimum=60, default=32 * 24 * 3600),
        max_points=p.value(c.get_int, env, "GATEWAY_MAX_POINTS", 11000, minimum=10, default=11000),
        max_query_length=p.value(c.get_int, env, "GATEWAY_MAX_QUERY_LENGTH", 16384, minimum=64, default=16384),
        max_query_depth=p.value(c.get_int, env, "GATEWAY_MAX_QUERY_DEPTH", 64, minimum=4, default=64),
        max_query_operators=p.value(c.get_int, env, "GATEWAY_MAX_QUERY_OPERATORS", 128, minimum=4, default=128),
        scope_org_id=scope_org,
        health_check_seconds=p.value(
            c.get_float, env, "GATEWAY_HEALTH_CHECK_SECONDS", 5.0, minimum=0.1, default=5.0),
        public_url=env.get("GATEWAY_PUBLIC_URL", "").strip() or None,
        auth_stale_if_error_seconds=p.value(c.get_float, env, "GATEWAY_AUTH_STALE_IF_ERROR", 300.0, default=300.0),
        auth_lookup_timeout_seconds=p.value(c.get_float, env, "GATEWAY_AUTH_LOOKUP_TIMEOUT", 3.0, minimum=0.1, default=3.0),
        auth_max_lookups=p.value(c.get_int, env, "GATEWAY_AUTH_MAX_LOOKUPS", 4, minimum=1, default=4),
        auth_failures_per_second=p.value(c.get_float, env, "GATEWAY_AUTH_FAILURES_PER_SECOND", 5.0, minimum=0.01, default=5.0),
        auth_failure_burst=p.value(c.get_int, env, "GATEWAY_AUTH_FAILURE_BURST", 20, minimum=1, default=20),
        auth_user_failures_per_second=p.value(c.get_float, env, "GATEWAY_AUTH_USER_FAILURES_PER_SECOND", 1.0, minimum=0.01, default=1.0),
        auth_user_failure_burst=p.value(c.get_int, env, "GATEWAY_AUTH_USER_FAILURE_BURST", 10, minimum=1, default=10),
        trusted_proxies=p.value(_networks, env, default=()),
        upstream_ttfb_timeout_seconds=p.value(c.get_float, env, "GATEWAY_UPSTREAM_TTFB_TIMEOUT", 2.0, minimum=0.05, default=2.0),
        metrics=p.value(metrics_access, env, default=Access(served=False)),
        upstream_probe_timeout_seconds=p.value(c.get_float, env, "GATEWAY_UPSTREAM_PROBE_TIMEOUT", 1.0, minimum=0.05, default=1.0),
        sso=p.value(sso_settings, env, default=None),
    )
    p.raise_if_any()
    return settings
