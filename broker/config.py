"""The broker's settings: one frozen dataclass built by a pure ``from_env(env)``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from tenant_metrics.core import config as cfg
from tenant_metrics.core.credentials import derive_key
from tenant_metrics.core.dashboard_sso import (
    CLIENT_ID_SHAPE,
    INSTANCE_DASHBOARD_PATH,
    SSO_CALLBACK_PATH,
    is_loopback_http,
)
from tenant_metrics.core.errors import ConfigError
from tenant_metrics.core.httpauth import Access, metrics_access

# Stable default catalog ids: Cloud Controller keys plans and offerings by these ids, so
# they must never change between releases (operators may override them, once).
DEFAULT_SERVICE_ID = "10cdfd27-97b4-4f39-9583-a56f77a858cd"
DEFAULT_SPACE_PLAN_ID = "bc41c325-d6d4-4177-8fb3-f2432b93957f"
DEFAULT_ORG_PLAN_ID = "fb30f71d-2053-406f-af52-f2316f3871eb"
# Cloud Controller gives up on a broker after 60 s and gunicorn kills a worker after its
# timeout (broker/gunicorn_conf.py); a database outage must end as an OSB 503 well before.
DEFAULT_REQUEST_TIMEOUT = 4.5
MAX_REQUEST_TIMEOUT = 30.0
DEFAULT_SERVICE_NAME = "tenant-metrics"
DEFAULT_GATEWAY_URL = "http://127.0.0.1:8090"
# docs/tenant-guide.md, as published beside the gateway unless operators point elsewhere.
DOCS_PATH = "/docs/tenant-guide.md"
DEFAULT_PORT = 8080
DEFAULT_MAX_BODY_BYTES = 64 * 1024

MIN_PASSWORD_LENGTH = 16
MIN_PASSWORD_DISTINCT = 6



@dataclass(frozen=True, slots=True)
class DashboardClient:
    """The UAA client Cloud Controller registers for dashboard SSO (catalog ``dashboard_client``)."""

    id: str
    secret: str = field(repr=False)
    redirect_uri: str


@dataclass(frozen=True, slots=True)
class CatalogSettings:
    """What operators may rename or re-id in the catalog."""

    service_id: str = DEFAULT_SERVICE_ID
    service_name: str = DEFAULT_SERVICE_NAME
    space_plan_id: str = DEFAULT_SPACE_PLAN_ID
    org_plan_id: str = DEFAULT_ORG_PLAN_ID
    documentation_url: str = DEFAULT_GATEWAY_URL + DOCS_PATH
    support_url: str = DEFAULT_GATEWAY_URL + DOCS_PATH


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    username: str
    password: str = field(repr=False)
    credentials_key: bytes = field(repr=False)
    database_url: str = field(repr=False)
    gateway_public_url: str = DEFAULT_GATEWAY_URL
    port: int = DEFAULT_PORT
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    catalog: CatalogSettings = field(default_factory=CatalogSettings)
    # The database URL with its timeouts (tenant_metrics.core.config.DatabaseSettings);
    # built from ``database_url`` with the default timeouts when not given.
    database: cfg.DatabaseSettings = field(default=None, repr=False)  # type: ignore[assignment]
    # Who may read /metrics: METRICS_USERNAME/METRICS_PASSWORD (or METRICS_BEARER_TOKEN);
    # without them open off Cloud Foundry and not served (404) on it (core/httpauth.py).
    metrics: Access = field(default_factory=Access)
    # BROKER_REQUEST_TIMEOUT: the longest a broker call waits for the database (broker/store.py
    # fits the DB_* timeouts inside it).
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    # DASHBOARD_CLIENT_ID/DASHBOARD_CLIENT_SECRET: dashboard SSO, on when set; None when off.
    dashboard_client: DashboardClient | None = None

    def __post_init__(self) -> None:
        if self.database is None:
            object.__setattr__(self, "database", cfg.DatabaseSettings(self.database_url))
        elif self.database.url != self.database_url:
            raise ValueError("BrokerSettings: database.url and database_url differ")

    def dashboard_url(self, instance_id: str) -> str:
        """The instance's dashboard with SSO on (the id percent-encoded), else the tenant page."""
        if self.dashboard_client is None:
            return f"{self.gateway_public_url}/ui/"
        return f"{self.gateway_public_url}{INSTANCE_DASHBOARD_PATH}{quote(instance_id, safe='')}"


def from_env(env: Mapping[str, str], cwd: str | None = None) -> BrokerSettings:
    """Read and validate every broker setting; one ConfigError naming every bad variable."""
    p = cfg.Problems()
    username = p.value(cfg.get_str, env, "BROKER_USERNAME", default="")
    if ":" in username:
        p.add("BROKER_USERNAME must not contain ':' (HTTP basic auth cannot carry it)")
    password = p.value(cfg.get_str, env, "BROKER_PASSWORD", default="")
    if password:
        p.read(check_password_strength, password, username)
    key_material = env.get("CREDENTIALS_KEY", "").strip() or password
    key = b""
    if key_material:
        try:
            key = derive_key(key_material)
        except ValueError as exc:
            p.add(f"CREDENTIALS_KEY: {exc}")
    gateway = p.value(_url, env, "GATEWAY_PUBLIC_URL", DEFAULT_GATEWAY_URL, default=DEFAULT_GATEWAY_URL)
    docs_url = p.value(_url, env, "BROKER_DOCUMENTATION_URL", gateway + DOCS_PATH, default=gateway + DOCS_PATH)
    catalog = CatalogSettings(
        service_id=cfg.get_str(env, "BROKER_SERVICE_ID", DEFAULT_SERVICE_ID),
        service_name=p.value(
            _cli_name, cfg.get_str(env, "BROKER_SERVICE_NAME", DEFAULT_SERVICE_NAME), default=DEFAULT_SERVICE_NAME
        ),
        space_plan_id=cfg.get_str(env, "BROKER_SPACE_PLAN_ID", DEFAULT_SPACE_PLAN_ID),
        org_plan_id=cfg.get_str(env, "BROKER_ORG_PLAN_ID", DEFAULT_ORG_PLAN_ID),
        documentation_url=docs_url,
        support_url=p.value(_url, env, "BROKER_SUPPORT_URL", docs_url, default=docs_url),
    )
    ids = (catalog.service_id, catalog.space_plan_id, catalog.org_plan_id)
    if len(set(ids)) != len(ids):
        p.add("BROKER_SERVICE_ID, BROKER_SPACE_PLAN_ID and BROKER_ORG_PLAN_ID must differ")
    database = p.value(cfg.DatabaseSettings.from_env, env, cwd, default=cfg.DatabaseSettings(""))
    dashboard_client = p.value(dashboard_client_from_env, env, gateway, default=None)
    settings = BrokerSettings(
        username=username,
        password=password,
        credentials_key=key,
        database_url=database.url,
        database=database,
        gateway_public_url=gateway,
        port=p.value(cfg.port, env, DEFAULT_PORT, default=DEFAULT_PORT),
        max_body_bytes=p.value(
            cfg.get_int, env, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, minimum=1024, default=DEFAULT_MAX_BODY_BYTES
        ),
        catalog=catalog,
        metrics=p.value(metrics_access, env, default=Access(served=False)),
        request_timeout=p.value(request_timeout_from_env, env, default=DEFAULT_REQUEST_TIMEOUT),
        dashboard_client=dashboard_client,
    )
    p.raise_if_any()
    return settings


def check_password_strength(password: str, username: str) -> None:
    """Refuse broker passwords a guesser could reach: short, repetitive, or the username."""
    check_secret_strength("BROKER_PASSWORD", password, "BROKER_USERNAME", username)


def check_secret_strength(name: str, secret: str, user_name: str, user: str) -> None:
    """Refuse a secret that is short, repetitive, or its own user name (the value is never shown)."""
    if len(secret) < MIN_PASSWORD_LENGTH:
        raise ConfigError(f"{name} must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(set(secret)) < MIN_PASSWORD_DISTINCT:
        raise ConfigError(f"{name} must use at least {MIN_PASSWORD_DISTINCT} distinct characters")
    if secret.lower() == user.lower():
        raise ConfigError(f"{name} must differ from {user_name}")


def dashboard_client_from_env(env: Mapping[str, str], gateway_public_url: str) -> DashboardClient | None:
    """DASHBOARD_CLIENT_ID/_SECRET: None (SSO off) without the id; every problem named."""
    client_id = env.get("DASHBOARD_CLIENT_ID", "").strip()
    if not client_id:
        return None
    p = cfg.Problems()
    if not CLIENT_ID_SHAPE.fullmatch(client_id):
        # The value is not echoed: a secret pasted into the wrong variable must not reach a log.
        p.add("DASHBOARD_CLIENT_ID must be 1 to 255 of the characters A-Z a-z 0-9 . _ : -")
    secret = env.get("DASHBOARD_CLIENT_SECRET", "").strip()
    if not secret:
        p.add("DASHBOARD_CLIENT_SECRET is required when DASHBOARD_CLIENT_ID is set")
    else:
        p.read(check_secret_strength, "DASHBOARD_CLIENT_SECRET", secret, "DASHBOARD_CLIENT_ID", client_id)
    if urlsplit(gateway_public_url).scheme != "https" and not is_loopback_http(gateway_public_url):
        p.add(f"GATEWAY_PUBLIC_URL must be https when DASHBOARD_CLIENT_ID is set (plain http only on "
              f"localhost, 127.0.0.1 or ::1): the SSO callback receives authorization codes, "
              f"got {gateway_public_url!r}")
    p.raise_if_any()
    return DashboardClient(id=client_id, secret=secret, redirect_uri=gateway_public_url + SSO_CALLBACK_PATH)


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    value = cfg.get_str(env, name, default).rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an http(s) URL with a host, got {value!r}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError(f"{name} must not carry credentials, a query or a fragment")
    return value


def _cli_name(name: str) -> str:
    # OSB 2.17: "MUST only contain alphanumeric characters, periods, and hyphens (no spaces)";
    # lowercase too, as every cf command line spells it.
    if not all(c.isascii() and (c.islower() or c.isdigit() or c in "-.") for c in name):
        raise ConfigError(f"BROKER_SERVICE_NAME must be lowercase letters, digits, '.' or '-', got {name!r}")
    return name


def request_timeout_from_env(environ: Mapping[str, str]) -> float:
    """BROKER_REQUEST_TIMEOUT (seconds): the longest a broker call waits for the database."""
    raw = environ.get("BROKER_REQUEST_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_REQUEST_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"BROKER_REQUEST_TIMEOUT must be a number of seconds, not {raw!r}") from None
    if not 1.0 <= value <= MAX_REQUEST_TIMEOUT:
        raise ConfigError(f"BROKER_REQUEST_TIMEOUT must be between 1 and {MAX_REQUEST_TIMEOUT:g} seconds")
    return value
