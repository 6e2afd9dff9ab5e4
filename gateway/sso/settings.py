"""SSO settings, read once with the gateway's (``gateway.config.from_env``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tenant_metrics.core import config as c
from tenant_metrics.core.dashboard_sso import CLIENT_ID_SHAPE, SSO_CALLBACK_PATH, is_loopback_http
from tenant_metrics.core.errors import ConfigError

DEFAULT_RECHECK_SECONDS = 300.0
MAX_SESSION_SECONDS = 8 * 3600.0
LOGIN_SECONDS = 600.0
MIN_SECRET_LENGTH = 32
MIN_SECRET_DISTINCT = 10


@dataclass(frozen=True, slots=True)
class SsoSettings:
    client_id: str
    client_secret: str = field(repr=False)
    cf_api_url: str
    public_url: str
    # Keys that encrypt and sign cookies: the first encrypts, every one decrypts (rotation:
    # SESSION_SECRET="new,old" while old sessions run out).
    session_secrets: tuple[str, ...] = field(repr=False)
    recheck_seconds: float = DEFAULT_RECHECK_SECONDS
    max_session_seconds: float = MAX_SESSION_SECONDS
    login_seconds: float = LOGIN_SECONDS
    http_timeout_seconds: float = 5.0
    # How long a worker trusts what it read of a session's instance (scope, label, existence).
    instance_ttl_seconds: float = 5.0

    @property
    def callback_url(self) -> str:
        return f"{self.public_url}{SSO_CALLBACK_PATH}"

    @property
    def origin(self) -> str:
        """scheme://host[:port] of GATEWAY_PUBLIC_URL: what a same-origin POST's Origin says."""
        return origin_of(self.public_url)

    @property
    def secure_cookies(self) -> bool:
        """Secure cookies everywhere but plain-HTTP localhost (the demo, tests)."""
        return urlsplit(self.public_url).scheme == "https"


def origin_of(url: str) -> str:
    """The origin as browsers serialise it: lowercase scheme and host, the port only when it
    is not the scheme's default."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        return ""
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def _check_secret(secret: str) -> None:
    if len(secret) < MIN_SECRET_LENGTH or len(set(secret)) < MIN_SECRET_DISTINCT:
        raise ConfigError(
            f"SESSION_SECRET must be at least {MIN_SECRET_LENGTH} characters with "
            f"{MIN_SECRET_DISTINCT} distinct ones (e.g. `openssl rand -hex 32`)"
        )


def _http_url(env: Mapping[str, str], name: str) -> str:
    url = c.get_str(env, name).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"{name} must be an http(s) URL without query or fragment, got {url!r}")
    if parts.scheme == "http" and not is_loopback_http(url):
        raise ConfigError(f"{name} must use https (plain http only on localhost), got {url!r}")
    return url


def sso_settings(env: Mapping[str, str]) -> SsoSettings | None:
    """None when DASHBOARD_CLIENT_ID is unset; otherwise every SSO setting, or one
    ConfigError naming each problem."""
    client_id = env.get("DASHBOARD_CLIENT_ID", "").strip()
    if not client_id:
        return None
    p = c.Problems()
    if not CLIENT_ID_SHAPE.fullmatch(client_id):
        p.add("DASHBOARD_CLIENT_ID must be 1-255 characters of letters, digits and ._:-")
    secret = p.value(c.get_str, env, "DASHBOARD_CLIENT_SECRET", default="")
    api = p.value(_http_url, env, "CF_API_URL", default="")
    public = p.value(_http_url, env, "GATEWAY_PUBLIC_URL", default="")
    if urlsplit(public).path not in ("", "/"):
        # The gateway serves /ui and the API at its root; cookies and redirects say so.
        p.add("GATEWAY_PUBLIC_URL must not have a path when DASHBOARD_CLIENT_ID is set (the gateway's own root)")
    secrets = tuple(s.strip() for s in env.get("SESSION_SECRET", "").split(",") if s.strip())
    if not secrets:
        p.add("SESSION_SECRET is required when DASHBOARD_CLIENT_ID is set (e.g. `openssl rand -hex 32`)")
    for s in secrets:
        p.read(_check_secret, s)
    recheck = p.value(c.get_float, env, "SSO_RECHECK_SECONDS", DEFAULT_RECHECK_SECONDS, minimum=1.0,
                      default=DEFAULT_RECHECK_SECONDS)
    longest = p.value(c.get_float, env, "SSO_SESSION_MAX_SECONDS", MAX_SESSION_SECONDS, minimum=60.0,
                      default=MAX_SESSION_SECONDS)
    if longest > MAX_SESSION_SECONDS:
        p.add(f"SSO_SESSION_MAX_SECONDS must be at most {MAX_SESSION_SECONDS:g} (8 hours)")
    timeout = p.value(c.get_float, env, "SSO_HTTP_TIMEOUT_SECONDS", 5.0, minimum=0.1, default=5.0)
    p.raise_if_any()
    return SsoSettings(client_id, secret, api, public, secrets, recheck_seconds=recheck,
                       max_session_seconds=longest, http_timeout_seconds=timeout)
