"""Credentials for our operational HTTP endpoints (sd's /targets, each part's /metrics).

Basic auth or a bearer token (or both, e.g. while rotating), read from the environment by
``credentials_from_env(env, "SD_HTTP")`` -> SD_HTTP_USERNAME / SD_HTTP_PASSWORD /
SD_HTTP_BEARER_TOKEN, and checked in constant time. ``Access`` adds the policy of an
endpoint: open, behind credentials, or not served at all (``NotFound``): on Cloud Foundry
the router makes every route public, so /metrics without a credential is not served there.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from tenant_metrics.core.config import get_str, on_cloud_foundry
from tenant_metrics.core.errors import ConfigError, NotFound, Unauthenticated

MIN_SECRET_LENGTH = 16
METRICS_PREFIX = "METRICS"


@dataclass(frozen=True, slots=True)
class HttpCredentials:
    """One account (basic) and/or one token (bearer); secrets stay out of ``repr``."""

    username: str = ""
    password: str = field(default="", repr=False)
    bearer_token: str = field(default="", repr=False)
    realm: str = "tenant-metrics"

    @property
    def scheme(self) -> str:
        """For logs: which schemes are accepted ("basic", "bearer", "basic+bearer")."""
        return "+".join(s for s, on in (("basic", self.password), ("bearer", self.bearer_token)) if on)

    def challenges(self) -> list[str]:
        """The ``WWW-Authenticate`` values of a 401, one per accepted scheme."""
        out = []
        if self.password:
            out.append(f'Basic realm="{self.realm}", charset="UTF-8"')
        if self.bearer_token:
            out.append(f'Bearer realm="{self.realm}"')
        return out

    def allows(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries these credentials. Every
        comparison is ``hmac.compare_digest`` over bytes, made whether or not the scheme or
        the username matched, so timing does not tell which part was wrong."""
        scheme, _, value = (authorization or "").strip().partition(" ")
        scheme, value = scheme.lower(), value.strip()
        basic_ok = bearer_ok = False
        if self.password:
            user, password = _basic(value) if scheme == "basic" else (b"", b"")
            user_ok = hmac.compare_digest(user, self.username.encode())
            password_ok = hmac.compare_digest(password, self.password.encode())
            basic_ok = scheme == "basic" and user_ok & password_ok
        if self.bearer_token:
            token_ok = hmac.compare_digest(value.encode() if scheme == "bearer" else b"", self.bearer_token.encode())
            bearer_ok = scheme == "bearer" and token_ok
        return basic_ok or bearer_ok


def _basic(value: str) -> tuple[bytes, bytes]:
    try:
        decoded = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return b"", b""
    user, _, password = decoded.partition(b":")
    return user, password


@dataclass(frozen=True, slots=True)
class Access:
    """Who may read an endpoint: anyone (no credentials), holders of ``credentials``, or
    nobody (``served=False``: answered as not found)."""

    credentials: HttpCredentials | None = None
    served: bool = True

    def check(self, authorization: str | None) -> None:
        """Raise ``NotFound`` or ``Unauthenticated`` (never with a secret in the message)."""
        if not self.served:
            raise NotFound("not found")
        if self.credentials is not None and not self.credentials.allows(authorization):
            raise Unauthenticated("missing or wrong credentials")

    @property
    def mode(self) -> str:
        """For logs: "open", "off" or the accepted schemes."""
        if not self.served:
            return "off"
        return self.credentials.scheme if self.credentials else "open"


def credentials_from_env(env: Mapping[str, str], prefix: str, realm: str = "tenant-metrics") -> HttpCredentials | None:
    """``<prefix>_USERNAME`` + ``<prefix>_PASSWORD`` and/or ``<prefix>_BEARER_TOKEN``; None
    when none is set. One ConfigError names every problem."""
    user_var, password_var, token_var = (f"{prefix}_USERNAME", f"{prefix}_PASSWORD", f"{prefix}_BEARER_TOKEN")
    username, password, token = (get_str(env, name, "") for name in (user_var, password_var, token_var))
    problems = []
    if bool(username) != bool(password):
        problems.append(f"{user_var} and {password_var} go together: set both or neither")
    if ":" in username:
        problems.append(f"{user_var} must not contain ':' (HTTP basic auth cannot carry it)")
    for name, secret in ((password_var, password), (token_var, token)):
        if secret and len(secret) < MIN_SECRET_LENGTH:
            problems.append(f"{name} must be at least {MIN_SECRET_LENGTH} characters")
    if problems:
        raise ConfigError("; ".join(problems), tuple(problems))
    if not (password or token):
        return None
    return HttpCredentials(username, password, token, realm)


def metrics_access(env: Mapping[str, str], fallback: HttpCredentials | None = None) -> Access:
    """The /metrics policy every part applies: METRICS_USERNAME / METRICS_PASSWORD (or
    METRICS_BEARER_TOKEN) when set, else ``fallback`` (a part's own credential), else open
    off Cloud Foundry and not served on it (the router would make it public)."""
    credentials = credentials_from_env(env, METRICS_PREFIX, "tenant-metrics metrics") or fallback
    if credentials is not None:
        return Access(credentials)
    return Access(served=not on_cloud_foundry(env))
