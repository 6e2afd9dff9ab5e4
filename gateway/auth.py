"""Who is asking: broker-issued credentials (Basic, or the password as Bearer) -> Tenant.

Verification is constant-time (``tenant_metrics.core.credentials.verify``), including for unknown
usernames (a dummy hash is compared so the timing does not reveal which usernames
exist). An answer is remembered for at most ``ttl`` seconds (<= 1), keyed by a digest of
the Authorization header, so an unbind or deprovision is honoured within a second
without a DB query per request. Refusals are remembered for the same time: a client
retrying stale credentials (a dashboard left open after its key was deleted) costs no
DB query per request. A refusal cannot wrongly outlive a new binding: a binding's
password is random and only known once the binding exists, so no header carrying it can
have been refused before. An unreachable database is never remembered.

Stale-if-error: a credential verified within the last ``stale_if_error`` seconds is also
kept (digest -> tenant); ``stale()`` hands it out only when the database cannot be
reached, and a refusal from the database drops it at once. Revocation cannot be committed
while the database is down, so this does not weaken it.

Refusals that need no database: a username without the broker's shape (``tm-`` and
lowercase letters and digits), and a username the database said does not exist, for
UNKNOWN_USERNAME_SECONDS (usernames are random and only known once their binding is
committed, so none can be refused before it exists).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from gateway.enforce import TenantMatcher
from tenant_metrics.core.credentials import USERNAME_PREFIX, hash_password, verify
from tenant_metrics.core.errors import Unauthenticated, UpstreamError
from tenant_metrics.core.labels import Scope
from tenant_metrics.core.models import Binding, ServiceInstance

_DUMMY_HASH = hash_password("tenant-metrics dummy password for unknown users")
# Deliberately loose (any length, any lowercase letter): only the prefix is a promise.
_USERNAME_SHAPE = re.compile(re.escape(USERNAME_PREFIX) + r"[0-9a-z]{1,64}")
UNKNOWN_USERNAME_SECONDS = 10.0
MAX_CACHE_ENTRIES = 10000
MAX_FIELD = 512
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Tenant:
    """An authenticated caller: the binding it used and the label value it may see."""

    binding_id: str
    username: str
    scope: Scope
    value: str

    @property
    def matcher(self) -> TenantMatcher:
        return TenantMatcher(self.scope.label, self.value)

    @classmethod
    def from_row(cls, binding: Any, instance: Any) -> Tenant:
        """A binding row and its instance row as a tenant (see ``for_instance``)."""
        return cls.for_instance(instance, binding.id, binding.username)

    @classmethod
    def for_instance(cls, instance: Any, caller_id: str, username: str) -> Tenant:
        """The one place an instance row becomes what its caller may see: the scope the
        instance's plan gives and the label value it enforces. A binding and a dashboard
        session of the same instance see exactly the same."""
        try:
            scope = Scope(instance.scope)
        except ValueError as exc:
            raise Unauthenticated("credentials have an unknown scope") from exc
        value = instance.space_guid if scope is Scope.SPACE else instance.organization_guid
        if not value:
            raise Unauthenticated("credentials have no tenant")
        return cls(caller_id, username, scope, value)


@dataclass(frozen=True, slots=True)
class Presented:
    """Credentials as the client sent them; the password is never printed."""

    username: str | None
    password: str

    def __repr__(self) -> str:
        return f"Presented(username={self.username!r}, password=<redacted>)"


def _cache_key(header: str) -> bytes:
    """The cache is keyed by a digest of the whole header: no password is kept in memory."""
    return hashlib.sha256(header.encode("utf-8", "surrogatepass")).digest()


def parse_authorization(header: str | None) -> Presented:
    """Read ``Authorization: Basic ...`` or ``Authorization: Bearer <password>``."""
    if not header:
        raise Unauthenticated("authentication required")
    scheme, _, rest = header.strip().partition(" ")
    rest = rest.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(rest, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise Unauthenticated("malformed basic credentials") from exc
        username, sep, password = decoded.partition(":")
        if not sep or not username or not password:
            raise Unauthenticated("malformed basic credentials")
        if len(username) > MAX_FIELD or len(password) > MAX_FIELD or _CONTROL.search(username):
            # Never a real credential; a NUL would even make PostgreSQL fail the lookup (503).
            raise Unauthenticated("invalid credentials")
        return Presented(username, password)
    if scheme.lower() == "bearer" and rest:
        if len(rest) > MAX_FIELD:
            raise Unauthenticated("invalid credentials")
        return Presented(None, rest)
    raise Unauthenticated("unsupported authorization scheme")


class UnknownUsername(Unauthenticated):
    """The database has no binding with this username (shown to clients as any refusal)."""


class Authenticator:
    """Verifies presented credentials against the bindings table, with a short cache."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        stale_if_error: float = 0.0,
    ) -> None:
        if ttl > 1.0:
            raise ValueError("the auth cache TTL must be at most 1 second")
        self._sessions = session_factory
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[bytes, tuple[float, Tenant]] = {}
        self._refused: dict[bytes, tuple[float, None]] = {}  # header digest -> (until when, None)
        self._stale_if_error = stale_if_error
        self._verified: dict[bytes, tuple[float, Tenant]] = {}  # digest -> (usable stale until, tenant)
        self._unknown: dict[bytes, tuple[float, None]] = {}  # username digest -> (until when, None)
        self._lock = threading.Lock()

    def precheck(self, header: str) -> Presented:
        """Parse the header and refuse, without I/O, what cannot be a broker-issued credential
        or names a username the database said a moment ago it does not know."""
        presented = parse_authorization(header)
        username = presented.username
        if username is not None:
            if not _USERNAME_SHAPE.fullmatch(username):
                raise Unauthenticated("invalid credentials")
            known = self._unknown.get(_cache_key(username))
            if known is not None and known[0] > self._clock():
                raise UnknownUsername("invalid credentials")
        return presented

    def recently_verified(self, header: str) -> bool:
        """Was this exact header verified within the stale-if-error window? (No I/O.)"""
        hit = self._verified.get(_cache_key(header))
        return hit is not None and hit[0] > self._clock()

    def stale(self, header: str) -> Tenant | None:
        """The tenant last verified for this header within the stale-if-error window, for use
        only while the database cannot be reached; remembered for ``ttl`` so the database is
        asked again at most once a ``ttl`` per credential."""
        key = _cache_key(header)
        now = self._clock()
        hit = self._verified.get(key)
        if hit is None or hit[0] <= now:
            return None
        if self._ttl > 0:
            with self._lock:
                _remember(self._cache, key, (now + self._ttl, hit[1]), now)
        return hit[1]

    def cached(self, header: str | None) -> Tenant | None:
        """The tenant if this header was verified less than ``ttl`` ago, without I/O; None if
        it must be verified. Raises Unauthenticated for a missing header or one refused
        less than ``ttl`` ago."""
        if not header:
            raise Unauthenticated("authentication required")
        key = _cache_key(header)
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        refused = self._refused.get(key)
        if refused is not None and refused[0] > now:
            raise Unauthenticated("invalid credentials")
        return None

    def authenticate(self, header: str | None) -> Tenant:
        """Verify against the DB unless remembered (blocking: an event loop calls it in a thread)."""
        tenant = self.cached(header)
        if tenant is not None:
            return tenant
        assert header is not None  # cached() refuses a missing header
        return self.lookup(header)

    def lookup(self, header: str) -> Tenant:
        """Ask the database, whatever is remembered, and remember its answer (blocking)."""
        key = _cache_key(header)
        now = self._clock()
        presented = self.precheck(header)
        try:
            tenant = self._lookup(presented)
        except Unauthenticated as exc:
            with self._lock:
                self._verified.pop(key, None)  # the database refused it: never served stale again
                if self._ttl > 0:
                    _remember(self._refused, key, (now + self._ttl, None), now)
                if isinstance(exc, UnknownUsername) and presented.username is not None:
                    _remember(self._unknown, _cache_key(presented.username),
                              (now + UNKNOWN_USERNAME_SECONDS, None), now)
            raise
        with self._lock:
            if self._ttl > 0:
                _remember(self._cache, key, (now + self._ttl, tenant), now)
            if self._stale_if_error > 0:
                _remember(self._verified, key, (now + self._stale_if_error, tenant), now)
        return tenant

    def _lookup(self, presented: Presented) -> Tenant:
        stmt = select(Binding, ServiceInstance).join(ServiceInstance, Binding.instance_id == ServiceInstance.id)
        if presented.username is not None:
            stmt = stmt.where(Binding.username == presented.username)
        else:
            stmt = stmt.where(Binding.password_sha256 == hash_password(presented.password))
        for attempt in (1, 2):
            try:
                with self._sessions() as session:
                    row = session.execute(stmt).first()
                break
            except DBAPIError as exc:
                # A pooled connection that died while idle (a database restart): once more,
                # on a fresh one. Anything else is the database's state, not the connection's.
                if exc.connection_invalidated and attempt == 1:
                    continue
                raise UpstreamError("credential store unavailable") from exc
            except SQLAlchemyError as exc:
                raise UpstreamError("credential store unavailable") from exc
        stored = row[0].password_sha256 if row is not None else _DUMMY_HASH
        ok = verify(presented.password, stored)
        if row is None and presented.username is not None:
            raise UnknownUsername("invalid credentials")
        if row is None or not ok:
            raise Unauthenticated("invalid credentials")
        binding, instance = row
        return Tenant.from_row(binding, instance)


class InstanceDirectory:
    """Service instances by id, for dashboard sessions (blocking: run it through a LookupRunner)."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._sessions = session_factory

    def find(self, instance_id: str) -> Any | None:
        """The instance row, or None; UpstreamError when the database cannot answer."""
        try:
            with self._sessions() as session:
                row = session.get(ServiceInstance, instance_id)
                if row is not None:
                    session.expunge(row)
                return row
        except SQLAlchemyError as exc:
            raise UpstreamError("credential store unavailable") from exc


def _remember(table: dict[bytes, tuple[float, Any]], key: bytes, entry: tuple[float, Any], now: float) -> None:
    """Add ``entry`` (expiry first), keeping ``table`` under MAX_CACHE_ENTRIES (expired go first)."""
    if len(table) >= MAX_CACHE_ENTRIES:
        for expired in [k for k, v in table.items() if v[0] <= now]:
            del table[expired]
        if len(table) >= MAX_CACHE_ENTRIES:
            table.clear()
    table[key] = entry
