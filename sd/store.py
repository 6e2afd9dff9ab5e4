"""sd's queries on the shared DB: owner cache, the integrator's lease, integration attempts.

Sessions are opened by the caller (tenant_metrics.core.db.session_scope); these functions only run
statements, so one unit of work can hold several of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tenant_metrics.core.models import IntegrationAttempt, Lease, ServiceOwner

_OWNERS: Table = ServiceOwner.__table__  # type: ignore[assignment]
_LEASES: Table = Lease.__table__  # type: ignore[assignment]


class _OwnerColumns(Protocol):
    """A ServiceOwner model or a Core row selecting its columns: the same attribute names."""

    service_instance_guid: str
    service_instance_name: str | None
    space_guid: str | None
    space_name: str | None
    organization_guid: str | None
    organization_name: str | None
    missing: bool
    refreshed_at: datetime


@dataclass(frozen=True, slots=True)
class OwnerRow:
    instance_guid: str
    instance_name: str | None
    space_guid: str | None
    space_name: str | None
    organization_guid: str | None
    organization_name: str | None
    missing: bool
    refreshed_at: datetime

    @classmethod
    def from_row(cls, row: _OwnerColumns) -> OwnerRow:
        """The one place a service_owners row becomes a record."""
        return cls(
            row.service_instance_guid,
            row.service_instance_name,
            row.space_guid,
            row.space_name,
            row.organization_guid,
            row.organization_name,
            bool(row.missing),
            row.refreshed_at,
        )

    def to_values(self) -> dict[str, object]:
        """The record as service_owners column values (the reverse of ``from_row``)."""
        return {
            "service_instance_guid": self.instance_guid,
            "service_instance_name": self.instance_name,
            "space_guid": self.space_guid,
            "space_name": self.space_name,
            "organization_guid": self.organization_guid,
            "organization_name": self.organization_name,
            "missing": self.missing,
            "refreshed_at": self.refreshed_at,
        }


_OWNER_COLUMNS = tuple(_OWNERS.c[name] for name in _OwnerColumns.__annotations__)


def _owner_rows(session: Session, where: Any = None) -> dict[str, OwnerRow]:
    # Columns, not entities: 10,000 rows without the ORM's identity map (sd_bench).
    query = select(*_OWNER_COLUMNS)
    if where is not None:
        query = query.where(where)
    return {r.service_instance_guid: OwnerRow.from_row(r) for r in session.execute(query)}


def load_owners(session: Session) -> dict[str, OwnerRow]:
    """Every remembered owner (one query: the table holds one row per Aiven service)."""
    return _owner_rows(session)


def load_owners_for(session: Session, guids: Iterable[str]) -> dict[str, OwnerRow]:
    """The remembered owners of these guids (chunked IN lists, within every DB's parameter limit)."""
    wanted = list(guids)
    out: dict[str, OwnerRow] = {}
    for start in range(0, len(wanted), 500):
        out.update(_owner_rows(session, _OWNERS.c.service_instance_guid.in_(wanted[start : start + 500])))
    return out


def save_owners(session: Session, rows: Iterable[OwnerRow], now: datetime) -> None:
    """Insert or update by guid in one upsert, so sd processes resolving the same new owners
    at once never collide on the primary key (both dialects have ON CONFLICT DO UPDATE)."""
    rows = list(rows)
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect not in ("postgresql", "sqlite"):
        raise ValueError(f"unsupported database dialect {dialect!r}")
    columns = [name for name in rows[0].to_values() if name != "service_instance_guid"]
    for start in range(0, len(rows), 500):
        chunk = [r.to_values() | {"resolved_at": now} for r in rows[start : start + 500]]
        if dialect == "postgresql":
            pg = pg_insert(_OWNERS).values(chunk)
            session.execute(pg.on_conflict_do_update(
                index_elements=["service_instance_guid"], set_={c: pg.excluded[c] for c in columns}))
        else:
            lite = sqlite_insert(_OWNERS).values(chunk)
            session.execute(lite.on_conflict_do_update(
                index_elements=["service_instance_guid"], set_={c: lite.excluded[c] for c in columns}))


def load_one(session: Session, guid: str) -> OwnerRow | None:
    row = session.get(ServiceOwner, guid)
    return None if row is None else OwnerRow.from_row(row)


# -- lease ---------------------------------------------------------------------------------
def try_acquire_lease(
    session: Session, name: str, holder: str, now: datetime, ttl: timedelta
) -> bool:
    """Take or renew the named lease if it is free, expired or already ours.

    The conditional UPDATE is atomic on both databases (PostgreSQL re-checks the WHERE
    after the row lock; SQLite write sessions are serialised by BEGIN IMMEDIATE). A first
    INSERT racing another first INSERT loses on the primary key.
    """
    t = _LEASES
    result = session.execute(
        update(t)
        .where(t.c.name == name)
        .where((t.c.expires_at <= now) | (t.c.holder == holder))
        .values(holder=holder, expires_at=now + ttl)
    )
    if result.rowcount == 1:  # type: ignore[attr-defined]
        return True
    if session.get(Lease, name) is not None:
        return False
    try:
        with session.begin_nested():
            session.execute(insert(t).values(name=name, holder=holder, expires_at=now + ttl))
    except IntegrityError:
        return False
    return True


def release_lease(session: Session, name: str, holder: str, now: datetime) -> None:
    t = _LEASES
    session.execute(
        update(t).where(t.c.name == name).where(t.c.holder == holder).values(expires_at=now)
    )


def lease_holder(session: Session, name: str) -> tuple[str, datetime] | None:
    row = session.get(Lease, name)
    return (row.holder, row.expires_at) if row else None


# -- integration attempts -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Attempt:
    service: str
    attempts: int
    last_error: str | None
    last_attempt_at: datetime
    next_attempt_at: datetime
    succeeded: bool

    @classmethod
    def from_row(cls, row: IntegrationAttempt) -> Attempt:
        """The one place an integration_attempts row becomes a record."""
        return cls(
            row.aiven_service_name,
            row.attempts,
            row.last_error,
            row.last_attempt_at,
            row.next_attempt_at,
            bool(row.succeeded),
        )


def load_attempts(session: Session, services: Iterable[str]) -> dict[str, Attempt]:
    names = list(services)
    out: dict[str, Attempt] = {}
    for start in range(0, len(names), 500):
        chunk = names[start : start + 500]
        for row in session.scalars(
            select(IntegrationAttempt).where(IntegrationAttempt.aiven_service_name.in_(chunk))
        ):
            out[row.aiven_service_name] = Attempt.from_row(row)
    return out


def record_attempt(
    session: Session,
    service: str,
    now: datetime,
    *,
    succeeded: bool,
    error: str | None = None,
    backoff: timedelta = timedelta(0),
) -> Attempt:
    row = session.get(IntegrationAttempt, service)
    if row is None:
        row = IntegrationAttempt(aiven_service_name=service, attempts=0)
        session.add(row)
    row.attempts = 0 if succeeded else (row.attempts or 0) + 1
    row.last_error = None if succeeded else error
    row.last_attempt_at = now
    row.next_attempt_at = now + backoff
    row.succeeded = succeeded
    session.flush()
    return Attempt.from_row(row)


def forget_attempts(session: Session, services: Iterable[str]) -> None:
    names = list(services)
    if names:
        session.execute(
            delete(IntegrationAttempt).where(IntegrationAttempt.aiven_service_name.in_(names))
        )
