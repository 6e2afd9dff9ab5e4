"""The two cookies of dashboard SSO, encrypted and authenticated (pure; no I/O).

- The *login* cookie lives for one sign-in (at most ten minutes, Path=/, __Host- on https):
  the ``state`` the callback must see again, the PKCE verifier and the instance. It binds
  the sign-in to the browser that started it.
- The *session* cookie carries who signed in, which instance they opened, the label
  value that instance lets them see, the user's access token (for permission rechecks)
  and when permissions were last checked. Nothing is kept on the server, so any gateway
  instance and worker can serve any session.

Both are Fernet tokens (AES-128-CBC + HMAC-SHA256) under keys derived from
SESSION_SECRET with HKDF, one key per purpose, so one cookie cannot pass for the other.
Several secrets may be given: the first encrypts, all decrypt (key rotation).
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAX_COOKIE_CHARS = 4000


class BadCookie(Exception):
    """Not a cookie we made, or one that was changed (never said to whom: just refused)."""


class ExpiredCookie(Exception):
    """A cookie we made that has run out; carries what it said, for a fresh sign-in."""

    def __init__(self, instance: str) -> None:
        super().__init__("expired")
        self.instance = instance


@dataclass(frozen=True, slots=True)
class LoginState:
    state: str
    verifier: str = field(repr=False)
    instance: str
    started_at: float


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    instance: str
    scope: str
    value: str
    user_id: str
    user_name: str
    token: str = field(repr=False)
    issued_at: float
    expires_at: float
    checked_at: float

    def checked(self, now: float) -> Session:
        return Session(self.sid, self.instance, self.scope, self.value, self.user_id, self.user_name,
                       self.token, self.issued_at, self.expires_at, now)


def _key(secret: str, purpose: bytes) -> bytes:
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"tenant-metrics dashboard sso",
               info=purpose).derive(secret.encode())
    return base64.urlsafe_b64encode(raw)


class _Sealer:
    def __init__(self, secrets: tuple[str, ...], purpose: bytes) -> None:
        if not secrets:
            raise ValueError("at least one secret is required")
        self._fernet = MultiFernet([Fernet(_key(s, purpose)) for s in secrets])

    def seal(self, payload: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(payload, separators=(",", ":")).encode()).decode("ascii")

    def open(self, cookie: str) -> dict[str, Any]:
        if not cookie or len(cookie) > MAX_COOKIE_CHARS:
            raise BadCookie("bad cookie")
        try:
            data = json.loads(self._fernet.decrypt(cookie.encode("ascii")))
        except (InvalidToken, UnicodeError, ValueError) as exc:
            raise BadCookie("bad cookie") from exc
        if not isinstance(data, dict):
            raise BadCookie("bad cookie")
        return data


def _typed(cls: type[Any], data: dict[str, Any]) -> Any:
    """Build ``cls`` from ``data``, refusing a missing, extra or mistyped field."""
    expected = {f.name: f.type for f in fields(cls)}
    if set(data) != set(expected):
        raise BadCookie("bad cookie")
    for name, kind in expected.items():
        value = data[name]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) if kind == "float" else isinstance(value, str)
        if not ok:
            raise BadCookie("bad cookie")
    return cls(**data)


class CookieCodec:
    """Seals and opens both cookies; ``now`` is wall-clock seconds (cookies outlive processes)."""

    def __init__(self, secrets: tuple[str, ...], login_seconds: float) -> None:
        self._login = _Sealer(secrets, b"login v1")
        self._session = _Sealer(secrets, b"session v1")
        self.login_seconds = login_seconds

    def seal_login(self, login: LoginState) -> str:
        return self._login.seal(asdict(login))

    def open_login(self, cookie: str, now: float) -> LoginState:
        login: LoginState = _typed(LoginState, self._login.open(cookie))
        if not 0 <= now - login.started_at <= self.login_seconds:
            raise ExpiredCookie(login.instance)
        return login

    def seal_session(self, session: Session) -> str:
        return self._session.seal(asdict(session))

    def open_session(self, cookie: str, now: float) -> Session:
        session: Session = _typed(Session, self._session.open(cookie))
        if now >= session.expires_at:
            raise ExpiredCookie(session.instance)
        return session
