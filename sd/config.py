"""sd's settings, read once from the environment by a pure function and validated up front."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypedDict

from tenant_metrics.core.config import (
    DatabaseSettings,
    Problems,
    get_float,
    get_int,
    get_list,
    get_str,
    on_cloud_foundry,
)
from tenant_metrics.core.errors import ConfigError
from tenant_metrics.core.httpauth import (
    Access,
    HttpCredentials,
    credentials_from_env,
    metrics_access,
)

DEFAULT_AIVEN_API_URL = "https://api.aiven.io"


@dataclass(frozen=True, slots=True)
class CloudFoundrySettings:
    api_url: str
    client_id: str
    client_secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class SdSettings:
    aiven_api_url: str
    aiven_api_token: str = field(repr=False)
    aiven_project: str = ""
    prometheus_endpoint_id: str = ""
    service_prefix: str = ""
    targets_file: str = "aiven-targets.json"
    interval_seconds: float = 60.0
    eligible_types: tuple[str, ...] = ("opensearch", "elasticsearch")
    scrape_port: int = 9273
    listen_host: str = "127.0.0.1"
    listen_port: int = 8095
    database: DatabaseSettings = field(default_factory=lambda: DatabaseSettings("sqlite://"))
    cloudfoundry: CloudFoundrySettings | None = None
    names_refresh_seconds: float = 3600.0
    max_integrations_per_cycle: int = 20
    http_timeout_seconds: float = 30.0
    dns_overrides_file: str | None = None
    max_target_drop: float = 0.5
    drop_min_targets: int = 5
    drop_confirm_cycles: int = 6
    # Who may read /targets (http_sd) and /metrics: None/open off Cloud Foundry (file_sd mode
    # on 127.0.0.1, as before); required on it (sd_http_settings).
    http_auth: HttpCredentials | None = None
    metrics: Access = field(default_factory=Access)

    @property
    def database_url(self) -> str:
        return self.database.url

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SdSettings:
        """Every sd variable; one ConfigError naming every one that is wrong or missing."""
        p = Problems()
        cf_names = ("CF_API_URL", "CF_CLIENT_ID", "CF_CLIENT_SECRET")
        present = [n for n in cf_names if env.get(n, "").strip()]
        cf = None
        if present:
            missing = [n for n in cf_names if n not in present]
            for name in missing:
                p.add(f"{name} is required when {present[0]} is set")
            if not missing:
                api_url = p.read(_url, env, "CF_API_URL", None)
                if api_url is not None:
                    cf = CloudFoundrySettings(api_url, get_str(env, "CF_CLIENT_ID"), get_str(env, "CF_CLIENT_SECRET"))
        prefix = p.value(service_prefix, env, default="")
        types = tuple(
            t.lower() for t in get_list(env, "SD_ELIGIBLE_TYPES", ("opensearch", "elasticsearch"))
        )
        database = p.value(DatabaseSettings.from_env, env, default=DatabaseSettings(""))
        settings = cls(
            aiven_api_url=p.value(_url, env, "AIVEN_API_URL", DEFAULT_AIVEN_API_URL, default=""),
            aiven_api_token=p.value(get_str, env, "AIVEN_API_TOKEN", default=""),
            aiven_project=p.value(get_str, env, "AIVEN_PROJECT", default=""),
            prometheus_endpoint_id=p.value(get_str, env, "AIVEN_PROMETHEUS_ENDPOINT_ID", default=""),
            service_prefix=prefix,
            targets_file=get_str(env, "SD_TARGETS_FILE", "aiven-targets.json"),
            interval_seconds=p.value(get_float, env, "SD_INTERVAL_SECONDS", 60.0, minimum=1.0, default=60.0),
            eligible_types=types,
            scrape_port=p.value(_port, env, "SD_SCRAPE_PORT", 9273, default=9273),
            **p.value(sd_http_settings, env, default=_SD_HTTP_DEFAULTS),
            database=database,
            cloudfoundry=cf,
            names_refresh_seconds=p.value(
                get_float, env, "SD_NAMES_REFRESH_SECONDS", 3600.0, minimum=1.0, default=3600.0
            ),
            max_integrations_per_cycle=p.value(
                get_int, env, "SD_MAX_INTEGRATIONS_PER_CYCLE", 20, minimum=0, default=20
            ),
            http_timeout_seconds=p.value(
                get_float, env, "SD_HTTP_TIMEOUT_SECONDS", 30.0, minimum=0.1, default=30.0
            ),
            dns_overrides_file=env.get("SD_DNS_OVERRIDES_FILE", "").strip() or None,
            **_guard_settings(env),
        )
        p.raise_if_any()
        return settings


class _SdHttpEnv(TypedDict):
    listen_host: str
    listen_port: int
    http_auth: HttpCredentials | None
    metrics: Access


_SD_HTTP_DEFAULTS: _SdHttpEnv = {
    "listen_host": "127.0.0.1", "listen_port": 8095, "http_auth": None, "metrics": Access(served=False)
}


def sd_http_settings(env: Mapping[str, str]) -> _SdHttpEnv:
    """Where sd's HTTP server listens and who may read it. Off Cloud Foundry: SD_LISTEN_HOST
    (127.0.0.1) and SD_LISTEN_PORT (8095), credentials optional. On it (VCAP_APPLICATION set)
    the router reaches the app on 0.0.0.0:$PORT and makes the route public, so SD_HTTP_USERNAME
    + SD_HTTP_PASSWORD or SD_HTTP_BEARER_TOKEN are required. /metrics takes the METRICS_*
    credential when set, else the same one as /targets."""
    p = Problems()
    auth = p.read(credentials_from_env, env, "SD_HTTP", "tenant-metrics-sd")
    if on_cloud_foundry(env):
        if auth is None and not p.messages:
            p.add("SD_HTTP_USERNAME and SD_HTTP_PASSWORD (or SD_HTTP_BEARER_TOKEN) are required on "
                  "Cloud Foundry: the route to /targets is public")
        host = "0.0.0.0"
        port = p.value(_port, env, "PORT", 8080, default=8080)
    else:
        host = get_str(env, "SD_LISTEN_HOST", "127.0.0.1")
        port = p.value(_port, env, "SD_LISTEN_PORT", 8095, default=8095)
    metrics = p.value(metrics_access, env, auth, default=Access(served=False))
    p.raise_if_any()
    return {"listen_host": host, "listen_port": port, "http_auth": auth, "metrics": metrics}


@dataclass(frozen=True, slots=True)
class OwnerLookupSettings:
    """What ``tenant-metrics owner`` needs: the prefix and the database, not the API secrets."""

    service_prefix: str
    database: DatabaseSettings

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OwnerLookupSettings:
        p = Problems()
        prefix = p.read(service_prefix, env)
        database = p.read(DatabaseSettings.from_env, env)
        p.raise_if_any()
        assert prefix is not None and database is not None
        return cls(prefix, database)


def service_prefix(env: Mapping[str, str]) -> str:
    prefix = get_str(env, "AIVEN_SERVICE_PREFIX")
    if prefix.endswith("-"):
        raise ConfigError("AIVEN_SERVICE_PREFIX must not end with '-' (the separator is added)")
    return prefix.lower()


def _url(env: Mapping[str, str], name: str, default: str | None) -> str:
    value = get_str(env, name, default).rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must be an http(s) URL, got {value!r}")
    return value


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    value = get_int(env, name, default, minimum=0)
    if value > 65535:
        raise ConfigError(f"{name} must be at most 65535, got {value}")
    return value


class _GuardEnv(TypedDict):
    max_target_drop: float
    drop_min_targets: int
    drop_confirm_cycles: int


def _guard_settings(env: Mapping[str, str]) -> _GuardEnv:
    """The mass-deletion guard (sd/guard.py)."""
    share = get_float(env, "SD_MAX_TARGET_DROP", 0.5, minimum=0.0)
    if share > 1.0:
        raise ConfigError(f"SD_MAX_TARGET_DROP is a share between 0 and 1, got {share}")
    return {
        "max_target_drop": share,
        "drop_min_targets": get_int(env, "SD_DROP_MIN_TARGETS", 5, minimum=0),
        "drop_confirm_cycles": get_int(env, "SD_DROP_CONFIRM_CYCLES", 6, minimum=1),
    }
