"""Operator confirmations of a withheld mass target drop, in the shared DB.

The DB rather than a file beside the targets: sd runs as several instances (and as a
CF app, each with its own disk), and all of them share the DB. A confirmation is valid
until ``expires_at``, so every instance withholding the drop applies it on its next cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from tenant_metrics.core.models import SdDropConfirmation

_TABLE: Table = SdDropConfirmation.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Confirmation:
    confirmed_at: datetime
    expires_at: datetime
    confirmed_by: str


def confirm(session: Session, by: str, now: datetime, valid_for: timedelta) -> Confirmation:
    row = Confirmation(now, now + valid_for, by[:255])
    session.execute(
        insert(_TABLE).values(
            confirmed_at=row.confirmed_at, expires_at=row.expires_at, confirmed_by=row.confirmed_by
        )
    )
    return row


def valid_confirmation(session: Session, now: datetime) -> Confirmation | None:
    """The latest confirmation still valid at ``now``, if any."""
    t = _TABLE
    row = session.execute(
        select(t.c.confirmed_at, t.c.expires_at, t.c.confirmed_by)
        .where(t.c.expires_at > now)
        .order_by(t.c.expires_at.desc())
        .limit(1)
    ).first()
    return Confirmation(row[0], row[1], row[2]) if row else None
