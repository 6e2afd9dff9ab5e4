"""The broker's queries over common.models: instances, bindings and their audit trail.

Every write is one transaction that also records an AuditEvent. Idempotency follows OSB:
a repeat with the same fingerprint is "identical" (200), a different one a conflict (409).
Concurrent identical requests race on the primary key: the loser's insert fails with an
IntegrityError, and it re-reads the winner's row in a fresh transaction and compares.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from broker.domain import (
    AuditAction,
    BindingKind,
    BindingRecord,
    BindRequest,
    Caller,
    InstanceRecord,
    Outcome,
    ProvisionRequest,
    UpdateRequest,
    fingerprint,
)
from common import credentials
from common.db import make_session_factory, ping, session_scope
from common.errors import Conflict, InvalidInput, NotFound, UpstreamError
from common.labels import Scope
from common.models import AuditEvent, Binding, ServiceInstance

# How often a write that lost a race is retried before giving up with a 503-worthy error.
_RACE_RETRIES = 3


class Store:
    """Owns the unit-of-work boundaries; callers pass values, never sessions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions: sessionmaker[Session] = make_session_factory(engine)

    # -- reads -------------------------------------------------------------------------

    def ping(self) -> None:
        ping(self.engine)

    def get_instance(self, instance_id: str) -> InstanceRecord:
        with self._unit() as s:
            row = s.get(ServiceInstance, instance_id)
            if row is None:
                raise NotFound(f"service instance {instance_id} does not exist")
            return _instance(row)

    def instances_of_org(self, organization_guid: str) -> list[tuple[InstanceRecord, list[BindingRecord]]]:
        with self._unit() as s:
            rows = s.scalars(
                select(ServiceInstance)
                .where(ServiceInstance.organization_guid == organization_guid)
                .order_by(ServiceInstance.created_at, ServiceInstance.id)
            ).all()
            return [(_instance(r), [_binding(b) for b in sorted(r.bindings, key=lambda b: b.id)]) for r in rows]

    def audit_events(self, instance_id: str) -> list[dict[str, Any]]:
        with self._unit() as s:
            rows = s.scalars(
                select(AuditEvent).where(AuditEvent.instance_id == instance_id).order_by(AuditEvent.id)
            ).all()
            return [
                {
                    "action": r.action,
                    "instance_id": r.instance_id,
                    "binding_id": r.binding_id,
                    "platform": r.platform,
                    "user_id": r.user_id,
                    "request_id": r.request_id,
                    "details": r.details,
                }
                for r in rows
            ]

    # -- instances ---------------------------------------------------------------------

    def provision(self, req: ProvisionRequest, caller: Caller) -> Outcome:
        wanted = req.fingerprint()
        for _ in range(_RACE_RETRIES):
            try:
                with self._unit(write=True) as s:
                    row = s.get(ServiceInstance, req.instance_id)
                    if row is not None:
                        return _repeat(row, wanted)
                    row = ServiceInstance(
                        id=req.instance_id,
                        service_id=req.service_id,
                        plan_id=req.plan_id,
                        scope=req.scope.value,
                        organization_guid=req.organization_guid,
                        space_guid=req.space_guid,
                        organization_name=req.organization_name,
                        space_name=req.space_name,
                        instance_name=req.instance_name,
                        parameters={},
                        request_fingerprint=wanted,
                    )
                    s.add(row)
                    _audit(s, AuditAction.PROVISION, caller, req.instance_id, None,
                           {"plan_id": req.plan_id, "scope": req.scope.value,
                            "organization_guid": req.organization_guid, "space_guid": req.space_guid})
                    s.flush()
                    return Outcome(created=True, instance=_instance(row))
            except IntegrityError:
                continue  # another request created it first: re-read and compare
        raise UpstreamError("database busy: could not settle concurrent provisions, retry")

    def update(self, req: UpdateRequest, caller: Caller) -> InstanceRecord:
        """Change plan (and so every binding's scope: the gateway reads the instance's
        scope) and follow context renames. An instance never moves org or space."""
        with self._unit(write=True) as s:
            row = s.get(ServiceInstance, req.instance_id, with_for_update=True)
            if row is None:
                raise NotFound(f"service instance {req.instance_id} does not exist")
            for name, value in (("organization_guid", req.organization_guid), ("space_guid", req.space_guid)):
                if value is not None and value != getattr(row, name):
                    raise InvalidInput(f"context.{name} differs from the instance's: an instance cannot move")
            changes: dict[str, Any] = {}
            if req.plan_id is not None and req.plan_id != row.plan_id:
                assert req.scope is not None
                changes["plan_id"] = [row.plan_id, req.plan_id]
                changes["scope"] = [row.scope, req.scope.value]
                row.plan_id = req.plan_id
                row.scope = req.scope.value
                for binding in row.bindings:
                    binding.plan_id = req.plan_id
                changes["rescoped_bindings"] = sorted(b.id for b in row.bindings)
            for name in ("organization_name", "space_name", "instance_name"):
                value = getattr(req, name)
                if value is not None and value != getattr(row, name):
                    changes[name] = [getattr(row, name), value]
                    setattr(row, name, value)
            if changes:
                row.request_fingerprint = fingerprint(
                    service_id=row.service_id, plan_id=row.plan_id,
                    organization_guid=row.organization_guid, space_guid=row.space_guid,
                )
                _audit(s, AuditAction.UPDATE, caller, row.id, None, changes)
            s.flush()
            return _instance(row)

    def deprovision(self, instance_id: str, caller: Caller) -> list[str]:
        """Delete the instance and revoke every binding at once; returns the revoked ids."""
        with self._unit(write=True) as s:
            revoked = list(s.scalars(select(Binding.id).where(Binding.instance_id == instance_id)))
            s.execute(delete(Binding).where(Binding.instance_id == instance_id))
            # rowcount, not a prior read: of two concurrent deletes only one removes the row.
            gone = s.execute(delete(ServiceInstance).where(ServiceInstance.id == instance_id))
            if gone.rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound(f"service instance {instance_id} does not exist")
            _audit(s, AuditAction.DEPROVISION, caller, instance_id, None, {"revoked_bindings": sorted(revoked)})
            return revoked

    # -- bindings ----------------------------------------------------------------------

    def bind(self, req: BindRequest, caller: Caller, key: bytes) -> Outcome:
        """Create the binding with fresh credentials derived from ``key``, or return the
        identical existing one (whose password the caller derives again from its nonce)."""
        wanted = req.fingerprint()
        for _ in range(_RACE_RETRIES):
            try:
                with self._unit(write=True) as s:
                    instance = s.get(ServiceInstance, req.instance_id)
                    if instance is None:
                        raise NotFound(f"service instance {req.instance_id} does not exist")
                    row = s.get(Binding, req.binding_id)
                    if row is not None:
                        if row.instance_id != req.instance_id or row.request_fingerprint != wanted:
                            raise Conflict(f"binding {req.binding_id} already exists with different attributes")
                        return Outcome(created=False, instance=_instance(instance), binding=_binding(row))
                    issued = credentials.issue(key)
                    row = Binding(
                        id=req.binding_id,
                        instance_id=req.instance_id,
                        service_id=req.service_id,
                        plan_id=instance.plan_id,
                        app_guid=req.app_guid,
                        kind=req.kind.value,
                        username=issued.username,
                        secret_nonce=issued.secret_nonce,
                        password_sha256=issued.password_sha256,
                        request_fingerprint=wanted,
                    )
                    s.add(row)
                    _audit(s, AuditAction.BIND, caller, req.instance_id, req.binding_id,
                           {"kind": req.kind.value, "app_guid": req.app_guid, "username": issued.username})
                    s.flush()
                    return Outcome(created=True, instance=_instance(instance), binding=_binding(row))
            except IntegrityError:
                continue  # a concurrent identical bind won, or the instance just went
        raise UpstreamError("database busy: could not settle concurrent binds, retry")

    def unbind(self, instance_id: str, binding_id: str, caller: Caller, action: AuditAction = AuditAction.UNBIND) -> None:
        with self._unit(write=True) as s:
            gone = s.execute(
                delete(Binding).where(Binding.id == binding_id, Binding.instance_id == instance_id)
            )
            if gone.rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound(f"binding {binding_id} does not exist")
            _audit(s, action, caller, instance_id, binding_id, {})

    def find_binding(self, binding_id: str) -> BindingRecord:
        with self._unit() as s:
            row = s.get(Binding, binding_id)
            if row is None:
                raise NotFound(f"binding {binding_id} does not exist")
            return _binding(row)

    # -- plumbing ----------------------------------------------------------------------

    @contextmanager
    def _unit(self, write: bool = False) -> Iterator[Session]:
        """One transaction; any database failure other than a constraint becomes UpstreamError."""
        try:
            with session_scope(self._sessions, write=write) as s:
                yield s
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            raise UpstreamError("database unavailable") from exc


def _repeat(row: ServiceInstance, wanted: str) -> Outcome:
    if row.request_fingerprint != wanted:
        raise Conflict(f"service instance {row.id} already exists with different attributes")
    return Outcome(created=False, instance=_instance(row))


def _audit(
    s: Session, action: AuditAction, caller: Caller, instance_id: str | None, binding_id: str | None,
    details: dict[str, Any],
) -> None:
    s.add(AuditEvent(
        action=action.value,
        instance_id=instance_id,
        binding_id=binding_id,
        platform=(caller.platform or None) and caller.platform[:64],
        user_id=(caller.user_id or None) and caller.user_id[:255],
        request_id=(caller.request_id or None) and caller.request_id[:255],
        details=details,
    ))


def _instance(row: ServiceInstance) -> InstanceRecord:
    return InstanceRecord(
        id=row.id,
        service_id=row.service_id,
        plan_id=row.plan_id,
        scope=Scope(row.scope),
        organization_guid=row.organization_guid,
        space_guid=row.space_guid,
        organization_name=row.organization_name,
        space_name=row.space_name,
        instance_name=row.instance_name,
    )


def _binding(row: Binding) -> BindingRecord:
    return BindingRecord(
        id=row.id,
        instance_id=row.instance_id,
        kind=BindingKind(row.kind),
        app_guid=row.app_guid,
        username=row.username,
        secret_nonce=row.secret_nonce,
    )
