"""The broker's queries over tenant_metrics.core.models: instances, bindings and their audit trail.

Every write is one transaction that also records an AuditEvent. Idempotency follows OSB:
a repeat with the same fingerprint is "identical" (200), a different one a conflict (409).
Inserts are ``INSERT ... ON CONFLICT DO NOTHING RETURNING id``: of concurrent identical
requests, the losers wait for the winner's commit, insert nothing, then read the winner's
row and compare fingerprints, so they never see an error. The statements are Core and
built once (SQLAlchemy reuses their compiled form): the broker's cost per request is then
mostly the round trips, not the ORM.

Every public call has a deadline (``request_timeout``, BROKER_REQUEST_TIMEOUT): each unit of
work runs under tenant_metrics.core.db's watchdog with the time left, so a hung database
gives a 503 before Cloud Controller or gunicorn give up, and a transaction either commits
before the answer or never (the server cancels a statement whose client went away).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Engine, Table, bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from broker import store_pg
from broker.config import DEFAULT_REQUEST_TIMEOUT, MAX_REQUEST_TIMEOUT, request_timeout_from_env  # noqa: F401
from broker.domain import (
    AuditAction,
    BindingRecord,
    BindRequest,
    Caller,
    InstanceRecord,
    Outcome,
    ProvisionRequest,
    UpdateRequest,
    fingerprint,
)
from tenant_metrics.core import credentials
from tenant_metrics.core.db import WATCHDOG, Timeouts, connection_fd, ping
from tenant_metrics.core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    UpstreamError,
    UpstreamTimeout,
)
from tenant_metrics.core.models import AuditEvent, Binding, ServiceInstance, utcnow

# How often a write that lost a race is retried before giving up with a 503-worthy error.
_RACE_RETRIES = 3

# PostgreSQL SQLSTATEs that mean "busy", not "down".
_LOCK_NOT_AVAILABLE = "55P03"
_QUERY_CANCELED = "57014"

_deadline: ContextVar[float | None] = ContextVar("broker_db_deadline", default=None)


def broker_timeouts(request_timeout: float, base: Timeouts | None = None) -> Timeouts:
    """Database timeouts that fit inside one broker request: a lock wait ends server-side
    (a clean 503) before the request's deadline, a connect leaves time for the query."""
    base = base or Timeouts()
    return Timeouts(
        connect_timeout=min(base.connect_timeout, max(2.0, request_timeout / 2)),
        statement_timeout=min(base.statement_timeout, max(0.5, request_timeout - 0.5)),
        lock_timeout=min(base.lock_timeout, max(0.25, request_timeout - 1.5)),
        pool_timeout=min(base.pool_timeout, max(0.5, request_timeout / 2)),
        keepalives_idle=base.keepalives_idle,
        keepalives_interval=base.keepalives_interval,
        keepalives_count=base.keepalives_count,
        migration_statement_timeout=base.migration_statement_timeout,
    )

_I = cast(Table, ServiceInstance.__table__)
_B = cast(Table, Binding.__table__)
_A = cast(Table, AuditEvent.__table__)

_GET_INSTANCE = select(_I).where(_I.c.id == bindparam("id"))
_GET_INSTANCE_FOR_UPDATE = _GET_INSTANCE.with_for_update()
_LOCK_INSTANCE = select(_I.c.id).where(_I.c.id == bindparam("id")).with_for_update()
_GET_BINDING = select(_B).where(_B.c.id == bindparam("id"))
_BINDING_IDS = select(_B.c.id).where(_B.c.instance_id == bindparam("instance_id")).order_by(_B.c.id)
_DELETE_BINDING = delete(_B).where(_B.c.id == bindparam("id"), _B.c.instance_id == bindparam("instance_id"))
_DELETE_BINDINGS_OF = delete(_B).where(_B.c.instance_id == bindparam("instance_id")).returning(_B.c.id)
_DELETE_INSTANCE = delete(_I).where(_I.c.id == bindparam("id"))
_INSERT_AUDIT = insert(_A)


T = TypeVar("T")


class _Disconnected(UpstreamError):
    """The pooled connection was dead (database restarted or failed over)."""


def _reconnecting(method: Callable[..., T]) -> Callable[..., T]:
    """Start the call's deadline (if no outer call did); run a unit of work again, once, on
    a fresh connection if the pooled one was dead, within the same deadline.

    This replaces the pool's pre-ping (a round trip before every checkout) at no cost on
    the happy path. Repeating is safe because every operation is idempotent at the OSB
    level: if the first attempt's COMMIT did land, the repeat finds the row (200) or finds
    it gone (410, which Cloud Controller takes as success for a delete).
    """

    @functools.wraps(method)
    def run(self: Store, *args: Any, **kwargs: Any) -> T:
        token = _deadline.set(time.monotonic() + self.request_timeout) if _deadline.get() is None else None
        try:
            try:
                return method(self, *args, **kwargs)
            except _Disconnected:
                return method(self, *args, **kwargs)
        finally:
            if token is not None:
                _deadline.reset(token)

    return run


def _insert_new(dialect: Any, table: Any) -> Any:
    return dialect.insert(table).on_conflict_do_nothing().returning(table.c.id)


_INSERT_NEW = {
    name: {"instance": _insert_new(mod, _I), "binding": _insert_new(mod, _B)}
    for name, mod in (("postgresql", postgresql), ("sqlite", sqlite))
}


class Store:
    """Owns the unit-of-work boundaries; callers pass values, never connections."""

    def __init__(self, engine: Engine, request_timeout: float = DEFAULT_REQUEST_TIMEOUT) -> None:
        self.engine = engine
        self.request_timeout = request_timeout
        if engine.dialect.name not in _INSERT_NEW:
            raise ValueError(f"unsupported database: {engine.dialect.name}")
        self._new = _INSERT_NEW[engine.dialect.name]
        self._pg = engine.dialect.name == "postgresql"

    # -- reads -------------------------------------------------------------------------

    @_reconnecting
    def ping(self) -> None:
        if not self._pg:
            ping(self.engine)
            return
        with self._unit(single=True) as conn:
            conn.exec_driver_sql("SELECT 1")

    @_reconnecting
    def get_instance(self, instance_id: str) -> InstanceRecord:
        with self._unit(single=True) as conn:
            return InstanceRecord.from_row(self._instance_row(conn, instance_id))

    @_reconnecting
    def find_binding(self, binding_id: str) -> BindingRecord:
        with self._unit(single=True) as conn:
            row = conn.execute(_GET_BINDING, {"id": binding_id}).first()
            if row is None:
                raise NotFound(f"binding {binding_id} does not exist")
            return BindingRecord.from_row(row)

    @_reconnecting
    def instances_of_org(self, organization_guid: str) -> list[tuple[InstanceRecord, list[BindingRecord]]]:
        with self._unit() as conn:
            rows = conn.execute(
                select(_I).where(_I.c.organization_guid == organization_guid).order_by(_I.c.created_at, _I.c.id)
            ).all()
            found = []
            for row in rows:
                bindings = conn.execute(select(_B).where(_B.c.instance_id == row.id).order_by(_B.c.id)).all()
                found.append((InstanceRecord.from_row(row), [BindingRecord.from_row(b) for b in bindings]))
            return found

    @_reconnecting
    def audit_events(self, instance_id: str) -> list[dict[str, Any]]:
        with self._unit() as conn:
            rows = conn.execute(select(_A).where(_A.c.instance_id == instance_id).order_by(_A.c.id)).all()
            return [
                {key: getattr(r, key) for key in
                 ("action", "instance_id", "binding_id", "platform", "user_id", "request_id", "details")}
                for r in rows
            ]

    # -- instances ---------------------------------------------------------------------

    @_reconnecting
    def provision(self, req: ProvisionRequest, caller: Caller) -> Outcome:
        wanted = req.fingerprint()
        now = utcnow()
        values: dict[str, Any] = {
            "id": req.instance_id,
            "service_id": req.service_id,
            "plan_id": req.plan_id,
            "scope": req.scope.value,
            "organization_guid": req.organization_guid,
            "space_guid": req.space_guid,
            "organization_name": req.organization_name,
            "space_name": req.space_name,
            "instance_name": req.instance_name,
            "parameters": {},
            "request_fingerprint": wanted,
            "created_at": now,
            "updated_at": now,
        }
        details = {"plan_id": req.plan_id, "scope": req.scope.value,
                   "organization_guid": req.organization_guid, "space_guid": req.space_guid}
        for _ in range(_RACE_RETRIES):
            if self._pg:
                with self._unit(single=True) as conn:
                    params = {**values, "parameters": "{}", **_audit_params(AuditAction.PROVISION, caller, details)}
                    if conn.execute(store_pg.PROVISION, params).first() is not None:
                        return Outcome(created=True, instance=InstanceRecord.from_row(values))
                    row = conn.execute(_GET_INSTANCE, {"id": req.instance_id}).first()
                    if row is None:
                        continue  # deleted between the two statements: try again
                    if row.request_fingerprint != wanted:
                        raise Conflict(f"service instance {req.instance_id} already exists with different attributes")
                    return Outcome(created=False, instance=InstanceRecord.from_row(row))
            with self._unit(write=True) as conn:
                if conn.execute(self._new["instance"], values).first() is None:
                    row = conn.execute(_GET_INSTANCE, {"id": req.instance_id}).first()
                    if row is None:
                        continue  # deleted between the two statements: try again
                    if row.request_fingerprint != wanted:
                        raise Conflict(f"service instance {req.instance_id} already exists with different attributes")
                    return Outcome(created=False, instance=InstanceRecord.from_row(row))
                _audit(conn, AuditAction.PROVISION, caller, req.instance_id, None, details)
                return Outcome(created=True, instance=InstanceRecord.from_row(values))
        raise UpstreamError("database busy: could not settle concurrent provisions, retry")

    @_reconnecting
    def update(self, req: UpdateRequest, caller: Caller) -> InstanceRecord:
        """Change plan (and so every binding's scope: the gateway reads the instance's
        scope) and follow context renames. An instance never moves org or space."""
        with self._unit(write=True) as conn:
            row = conn.execute(_GET_INSTANCE_FOR_UPDATE, {"id": req.instance_id}).first()
            if row is None:
                raise NotFound(f"service instance {req.instance_id} does not exist")
            for name, value in (("organization_guid", req.organization_guid), ("space_guid", req.space_guid)):
                if value is not None and value != getattr(row, name):
                    raise InvalidInput(f"context.{name} differs from the instance's: an instance cannot move")
            new: dict[str, Any] = {}
            changes: dict[str, Any] = {}
            if req.plan_id is not None and req.plan_id != row.plan_id:
                assert req.scope is not None
                new.update(plan_id=req.plan_id, scope=req.scope.value)
                changes["plan_id"] = [row.plan_id, req.plan_id]
                changes["scope"] = [row.scope, req.scope.value]
                conn.execute(update(_B).where(_B.c.instance_id == row.id).values(plan_id=req.plan_id))
                changes["rescoped_bindings"] = list(conn.scalars(_BINDING_IDS, {"instance_id": row.id}))
            for name in ("organization_name", "space_name", "instance_name"):
                value = getattr(req, name)
                if value is not None and value != getattr(row, name):
                    new[name] = value
                    changes[name] = [getattr(row, name), value]
            if not new:
                return InstanceRecord.from_row(row)
            plan_id = new.get("plan_id", row.plan_id)
            new["request_fingerprint"] = fingerprint(
                service_id=row.service_id, plan_id=plan_id,
                organization_guid=row.organization_guid, space_guid=row.space_guid,
            )
            new["updated_at"] = utcnow()
            conn.execute(update(_I).where(_I.c.id == row.id).values(**new))
            _audit(conn, AuditAction.UPDATE, caller, row.id, None, changes)
            return InstanceRecord.from_row(conn.execute(_GET_INSTANCE, {"id": row.id}).one())

    @_reconnecting
    def deprovision(self, instance_id: str, caller: Caller) -> list[str]:
        """Delete the instance and revoke every binding at once; returns the revoked ids."""
        if self._pg:
            with self._unit(write=True) as conn:
                # The row lock waits for every bind holding the instance (its foreign-key
                # check) and holds off new ones, so the next statement's fresh snapshot sees
                # exactly the bindings the cascade will remove.
                if conn.execute(_LOCK_INSTANCE, {"id": instance_id}).first() is None:
                    raise NotFound(f"service instance {instance_id} does not exist")
                params = {"instance_id": instance_id, **_audit_params(AuditAction.DEPROVISION, caller, {})}
                done = conn.execute(store_pg.DEPROVISION, params).first()
            if done is None:
                raise NotFound(f"service instance {instance_id} does not exist")
            return list(done.details["revoked_bindings"])
        with self._unit(write=True) as conn:
            revoked: list[str] = sorted(conn.scalars(_DELETE_BINDINGS_OF, {"instance_id": instance_id}))
            # rowcount, not a prior read: of two concurrent deletes only one removes the row.
            if conn.execute(_DELETE_INSTANCE, {"id": instance_id}).rowcount == 0:
                raise NotFound(f"service instance {instance_id} does not exist")
            _audit(conn, AuditAction.DEPROVISION, caller, instance_id, None, {"revoked_bindings": revoked})
            return revoked

    # -- bindings ----------------------------------------------------------------------

    @_reconnecting
    def bind(self, req: BindRequest, caller: Caller, key: bytes) -> Outcome:
        """Create the binding with fresh credentials derived from ``key``, or return the
        identical existing one (whose password the caller derives again from its nonce)."""
        wanted = req.fingerprint()
        for _ in range(_RACE_RETRIES):
            try:
                with self._unit(write=not self._pg, single=self._pg) as conn:
                    instance = InstanceRecord.from_row(self._instance_row(conn, req.instance_id))
                    issued = credentials.issue(key)
                    values = {
                        "id": req.binding_id,
                        "instance_id": req.instance_id,
                        "service_id": req.service_id,
                        "plan_id": instance.plan_id,
                        "app_guid": req.app_guid,
                        "kind": req.kind.value,
                        "username": issued.username,
                        "secret_nonce": issued.secret_nonce,
                        "password_sha256": issued.password_sha256,
                        "request_fingerprint": wanted,
                        "created_at": utcnow(),
                    }
                    audit = {"kind": req.kind.value, "app_guid": req.app_guid, "username": issued.username}
                    if self._pg:
                        params = {**values, **_audit_params(AuditAction.BIND, caller, audit)}
                        inserted = conn.execute(store_pg.BIND, params).first() is not None
                    else:
                        inserted = conn.execute(self._new["binding"], values).first() is not None
                        if inserted:
                            _audit(conn, AuditAction.BIND, caller, req.instance_id, req.binding_id, audit)
                    if not inserted:
                        row = conn.execute(_GET_BINDING, {"id": req.binding_id}).first()
                        if row is None:
                            continue
                        if row.instance_id != req.instance_id or row.request_fingerprint != wanted:
                            raise Conflict(f"binding {req.binding_id} already exists with different attributes")
                        return Outcome(created=False, instance=instance, binding=BindingRecord.from_row(row))
                    return Outcome(created=True, instance=instance, binding=BindingRecord(
                        id=req.binding_id, instance_id=req.instance_id, kind=req.kind, app_guid=req.app_guid,
                        username=issued.username, secret_nonce=issued.secret_nonce,
                        password_sha256=issued.password_sha256))
            except IntegrityError:
                continue  # the instance went while we bound (foreign key): look again
        raise UpstreamError("database busy: could not settle concurrent binds, retry")

    @_reconnecting
    def rekey(self, binding: BindingRecord, caller: Caller, key: bytes) -> BindingRecord:
        """New secret for an existing binding whose password the current key cannot derive
        again (CREDENTIALS_KEY was rotated between a bind and its retry)."""
        issued = credentials.issue(key, binding.username)
        with self._unit(write=True) as conn:
            done = conn.execute(
                update(_B).where(_B.c.id == binding.id, _B.c.secret_nonce == binding.secret_nonce)
                .values(secret_nonce=issued.secret_nonce, password_sha256=issued.password_sha256)
            )
            if done.rowcount == 0:
                raise Conflict(f"binding {binding.id} changed concurrently; retry")
            _audit(conn, AuditAction.BIND, caller, binding.instance_id, binding.id, {"rekeyed": True})
        return BindingRecord(id=binding.id, instance_id=binding.instance_id, kind=binding.kind,
                             app_guid=binding.app_guid, username=binding.username,
                             secret_nonce=issued.secret_nonce, password_sha256=issued.password_sha256)

    @_reconnecting
    def unbind(self, instance_id: str, binding_id: str, caller: Caller,
               action: AuditAction = AuditAction.UNBIND) -> None:
        if self._pg:
            with self._unit(single=True) as conn:
                params = {"binding_id": binding_id, "instance_id": instance_id, **_audit_params(action, caller, {})}
                if conn.execute(store_pg.UNBIND, params).first() is None:
                    raise NotFound(f"binding {binding_id} does not exist")
            return
        with self._unit(write=True) as conn:
            if conn.execute(_DELETE_BINDING, {"id": binding_id, "instance_id": instance_id}).rowcount == 0:
                raise NotFound(f"binding {binding_id} does not exist")
            _audit(conn, action, caller, instance_id, binding_id, {})

    # -- plumbing ----------------------------------------------------------------------

    @staticmethod
    def _instance_row(conn: Connection, instance_id: str) -> Row[Any]:
        row = conn.execute(_GET_INSTANCE, {"id": instance_id}).first()
        if row is None:
            raise NotFound(f"service instance {instance_id} does not exist")
        return row

    @contextmanager
    def _unit(self, write: bool = False, single: bool = False) -> Iterator[Connection]:
        """One transaction (SQLite: BEGIN IMMEDIATE for writes, so writers queue rather
        than deadlock); any database failure other than a constraint becomes UpstreamError.

        ``single``: on PostgreSQL, statements that are atomic on their own run in autocommit
        (no BEGIN/COMMIT round trips); elsewhere it is an ordinary transaction.
        """
        deadline = _deadline.get()
        try:
            if deadline is not None and deadline <= time.monotonic():
                raise UpstreamTimeout("database did not answer in time")
            with self.engine.connect() as conn:
                left = self.request_timeout if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    raise UpstreamTimeout("database did not answer in time")
                with WATCHDOG.watching(connection_fd(conn.connection.dbapi_connection), left):
                    if single and self._pg:
                        conn.execution_options(isolation_level="AUTOCOMMIT")
                        yield conn
                        return
                    if write:
                        conn.execution_options(write=True)
                    with conn.begin():
                        yield conn
        except IntegrityError:
            raise
        except PoolTimeout as exc:
            raise UpstreamTimeout("database busy: no connection free in time") from exc
        except DBAPIError as exc:
            raise _database_error(exc, deadline) from exc
        except SQLAlchemyError as exc:
            raise UpstreamError("database unavailable") from exc


def _database_error(exc: DBAPIError, deadline: float | None) -> UpstreamError:
    """A driver error as a client-safe UpstreamError (the details stay in the chain)."""
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate == _LOCK_NOT_AVAILABLE or "database is locked" in str(exc.orig):
        return UpstreamError("database busy: a lock wait timed out")
    if sqlstate == _QUERY_CANCELED:
        return UpstreamTimeout("database busy: a statement timed out")
    if deadline is not None and deadline <= time.monotonic():
        return UpstreamTimeout("database did not answer in time")
    if exc.connection_invalidated:
        return _Disconnected("database connection lost")
    return UpstreamError("database unavailable")


def _audit(conn: Connection, action: AuditAction, caller: Caller, instance_id: str | None,
           binding_id: str | None, details: dict[str, Any]) -> None:
    conn.execute(_INSERT_AUDIT, {
        "at": utcnow(),
        "action": action.value,
        "instance_id": instance_id,
        "binding_id": binding_id,
        "platform": caller.platform[:64] if caller.platform else None,
        "user_id": caller.user_id[:255] if caller.user_id else None,
        "request_id": caller.request_id[:255] if caller.request_id else None,
        "details": details,
    })


def _audit_params(action: AuditAction, caller: Caller, details: dict[str, Any]) -> dict[str, Any]:
    return {
        "at": utcnow(),
        "action": action.value,
        "platform": caller.platform[:64] if caller.platform else None,
        "user_id": caller.user_id[:255] if caller.user_id else None,
        "request_id": caller.request_id[:255] if caller.request_id else None,
        "details": json.dumps(details),
    }


