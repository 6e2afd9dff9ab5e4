"""Who owns each Aiven service: name -> CF instance guid -> space -> org, with names.

Sources, cheapest first: the service's ``organization_id``/``space_id`` tags (set by the
broker that created it; an instance never moves space), the DB (what Cloud Controller said
last time), then Cloud Controller itself in batches for guids the DB does not know or knows
only from longer ago than the refresh interval. Answers are remembered in the DB; an
instance CC no longer knows is marked ``missing`` and loses its targets. A service whose
org and space guids are not both known is unresolved and never gets tenant labels.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from sd import store
from sd.aiven import AivenService
from sd.cloudfoundry import CloudController
from sd.http import ApiError
from tenant_metrics.core.db import session_scope

log = logging.getLogger(__name__)

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def parse_instance_guid(service_name: str, prefix: str) -> str | None:
    """``<prefix>-<guid>`` -> guid. The prefix may contain hyphens, so match it whole."""
    found = re.fullmatch(re.escape(prefix.lower()) + "-(" + _UUID + ")", service_name.lower())
    return found.group(1) if found else None


@dataclass(frozen=True, slots=True)
class Owner:
    instance_guid: str
    instance_name: str
    space_guid: str
    space_name: str
    organization_guid: str
    organization_name: str


@dataclass(frozen=True, slots=True)
class OwnerReport:
    owners: dict[str, Owner]  # by Aiven service name
    unparsed: tuple[str, ...] = ()  # names not <prefix>-<guid>
    unresolved: tuple[str, ...] = ()  # guid known, owner not (yet)
    missing: tuple[str, ...] = ()  # CC says the instance is gone
    cc_error: ApiError | None = field(default=None, compare=False)
    cc_lookups: int = 0


class OwnerResolver:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        prefix: str,
        cc: CloudController | None,
        *,
        now: Callable[[], datetime],
        refresh_seconds: float = 3600.0,
        max_refresh_per_cycle: int = 1000,
    ) -> None:
        self._sessions = session_factory
        self._prefix = prefix
        self._cc = cc
        self._now = now
        self._refresh = timedelta(seconds=refresh_seconds)
        self._max_refresh = max_refresh_per_cycle
        # Per-process copy of the DB rows for the services seen last cycle: a steady cycle
        # reads nothing from the DB; new guids are looked up there before asking CC.
        self._memory: dict[str, store.OwnerRow] | None = None

    def _remembered(self, guids: Iterable[str]) -> dict[str, store.OwnerRow]:
        if self._memory is None:
            with session_scope(self._sessions) as session:
                self._memory = store.load_owners(session)
        else:
            unknown = [g for g in set(guids) if g not in self._memory]
            if unknown:
                with session_scope(self._sessions) as session:
                    self._memory.update(store.load_owners_for(session, unknown))
        return self._memory

    def resolve(self, services: Sequence[AivenService]) -> OwnerReport:
        guids: dict[str, str] = {}
        unparsed = []
        for svc in services:
            guid = parse_instance_guid(svc.name, self._prefix)
            if guid is None:
                unparsed.append(svc.name)
            else:
                guids[svc.name] = guid
        rows = self._remembered(guids.values())
        cc_error, asked = None, 0
        wanted = self._to_ask(guids.values(), rows)
        if self._cc is not None and wanted:
            asked = len(wanted)
            try:
                rows = self._ask_cc(wanted, rows)
            except ApiError as exc:
                cc_error = exc
                log.warning(
                    "cloud controller lookup failed; using remembered owners",
                    extra={
                        "event": "owners_cc_failed",
                        "kind": str(exc.kind),
                        "error": str(exc),
                        "guids": len(wanted),
                    },
                )
        current = set(guids.values())
        self._memory = {g: r for g, r in rows.items() if g in current}
        return self._report(services, guids, rows, tuple(unparsed), cc_error, asked)

    def _to_ask(self, guids: Iterable[str], rows: dict[str, store.OwnerRow]) -> list[str]:
        """Unknown guids (all of them), then the stalest known ones (bounded per cycle)."""
        stale_before = self._now() - self._refresh
        unknown, stale = [], []
        for guid in sorted(set(guids)):
            row = rows.get(guid)
            if row is None:
                unknown.append(guid)
            elif row.refreshed_at <= stale_before:
                stale.append((row.refreshed_at, guid))
        stale.sort()
        return unknown + [g for _, g in stale[: self._max_refresh]]

    def _ask_cc(
        self, wanted: list[str], rows: dict[str, store.OwnerRow]
    ) -> dict[str, store.OwnerRow]:
        assert self._cc is not None
        found = self._cc.service_instances(wanted)
        now = self._now()
        updated = []
        for guid in wanted:
            inst = found.get(guid)
            if inst is None:
                old = rows.get(guid)
                updated.append(
                    store.OwnerRow(
                        guid,
                        old.instance_name if old else None,
                        old.space_guid if old else None,
                        old.space_name if old else None,
                        old.organization_guid if old else None,
                        old.organization_name if old else None,
                        True,
                        now,
                    )
                )
            else:
                updated.append(
                    store.OwnerRow(
                        guid,
                        inst.name,
                        inst.space_guid,
                        inst.space_name,
                        inst.organization_guid,
                        inst.organization_name,
                        False,
                        now,
                    )
                )
        with session_scope(self._sessions, write=True) as session:
            store.save_owners(session, updated, now)
        merged = dict(rows)
        merged.update({r.instance_guid: r for r in updated})
        return merged

    def _report(
        self,
        services: Sequence[AivenService],
        guids: dict[str, str],
        rows: dict[str, store.OwnerRow],
        unparsed: tuple[str, ...],
        cc_error: ApiError | None,
        asked: int,
    ) -> OwnerReport:
        owners: dict[str, Owner] = {}
        unresolved, missing = [], []
        for svc in services:
            guid = guids.get(svc.name)
            if guid is None:
                continue
            row = rows.get(guid)
            if row is not None and row.missing:
                missing.append(svc.name)
                continue
            space = (row.space_guid if row else None) or svc.tags.get("space_id")
            org = (row.organization_guid if row else None) or svc.tags.get("organization_id")
            if row and row.space_guid and svc.tags.get("space_id") not in (None, row.space_guid):
                log.warning(
                    "service tags disagree with cloud controller; using cloud controller",
                    extra={"event": "owner_tag_mismatch", "aiven_service_name": svc.name},
                )
            if not (space and org):
                unresolved.append(svc.name)
                continue
            owners[svc.name] = Owner(
                guid,
                (row.instance_name if row else None) or "",
                space,
                (row.space_name if row else None) or "",
                org,
                (row.organization_name if row else None) or "",
            )
        return OwnerReport(owners, unparsed, tuple(unresolved), tuple(missing), cc_error, asked)
