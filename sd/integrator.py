"""Make sure every eligible Aiven service has exactly one prometheus integration to our endpoint.

Exactly once, even with several sd processes: only the holder of the ``sd-integrator``
lease in the shared DB creates integrations, and it re-reads each service from Aiven just
before creating (the list it decided from may be minutes old, and another holder may have
acted since). Bounded: at most ``max_per_cycle`` creations per cycle. A service that keeps
failing backs off exponentially (recorded in the DB, so every sd process sees it) and is
reported, never retried in a hot loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from sd import store
from sd.aiven import AivenClient, AivenService
from sd.http import ApiError, FailureKind
from tenant_metrics.core.db import session_scope

log = logging.getLogger(__name__)

LEASE_NAME = "sd-integrator"
INELIGIBLE_PLAN_PREFIXES = ("hobbyist", "free")  # Aiven: no integrations on these plans
# After a create succeeded, trust it for this long even if a (stale) listing lacks it.
RECENT_SUCCESS = timedelta(minutes=10)


def needs_integration(
    service: AivenService, endpoint_id: str, eligible_types: Collection[str]
) -> bool:
    """Pure: eligible type, RUNNING, a plan that allows integrations, and none of ours yet."""
    return (
        service.type in eligible_types
        and service.state == "RUNNING"
        and not service.plan.lower().startswith(INELIGIBLE_PLAN_PREFIXES)
        and not service.has_prometheus_integration(endpoint_id)
    )


def backoff_for(attempts: int, base: timedelta, cap: timedelta) -> timedelta:
    delay: timedelta = base * (2 ** max(0, attempts - 1))
    return min(delay, cap)


@dataclass(frozen=True, slots=True)
class IntegrationReport:
    candidates: int = 0
    created: tuple[str, ...] = ()
    already_present: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()  # (service, error)
    backing_off: tuple[str, ...] = ()
    deferred: int = 0  # over the per-cycle bound
    lease_held_elsewhere: bool = False
    errors: tuple[FailureKind, ...] = field(default=(), compare=False)


class Integrator:
    def __init__(
        self,
        client: AivenClient,
        session_factory: sessionmaker[Session],
        endpoint_id: str,
        *,
        eligible_types: Collection[str],
        holder: str,
        now: Callable[[], datetime],
        max_per_cycle: int = 20,
        lease_ttl: timedelta = timedelta(minutes=5),
        backoff_base: timedelta = timedelta(minutes=1),
        backoff_cap: timedelta = timedelta(hours=6),
    ) -> None:
        self._client = client
        self._sessions = session_factory
        self._endpoint = endpoint_id
        self._types = frozenset(eligible_types)
        self._holder = holder
        self._now = now
        self._max = max_per_cycle
        self._ttl = lease_ttl
        self._base = backoff_base
        self._cap = backoff_cap

    def run(self, services: Sequence[AivenService]) -> IntegrationReport:
        candidates = [s for s in services if needs_integration(s, self._endpoint, self._types)]
        if not candidates or self._max == 0:
            return IntegrationReport(candidates=len(candidates), deferred=len(candidates))
        now = self._now()
        with session_scope(self._sessions, write=True) as session:
            if not store.try_acquire_lease(session, LEASE_NAME, self._holder, now, self._ttl):
                return IntegrationReport(candidates=len(candidates), lease_held_elsewhere=True)
            attempts = store.load_attempts(session, [s.name for s in candidates])
        try:
            return self._work(candidates, attempts)
        finally:
            with session_scope(self._sessions, write=True) as session:
                store.release_lease(session, LEASE_NAME, self._holder, self._now())

    def _work(
        self, candidates: list[AivenService], attempts: dict[str, store.Attempt]
    ) -> IntegrationReport:
        now = self._now()
        due, waiting = [], []
        for svc in sorted(candidates, key=lambda s: s.name):
            att = attempts.get(svc.name)
            recent_ok = (
                att is not None and att.succeeded and now - att.last_attempt_at < RECENT_SUCCESS
            )
            if att is not None and (att.next_attempt_at > now or recent_ok):
                waiting.append(svc.name)
            else:
                due.append(svc)
        # Least-tried first, so one service that always fails cannot starve the others.
        due.sort(key=lambda s: (attempts[s.name].attempts if s.name in attempts else 0, s.name))
        chosen, deferred = due[: self._max], len(due) - min(len(due), self._max)
        created, present, failed, kinds = [], [], [], []
        for svc in chosen:
            if not self._still_ours():
                deferred += 1
                continue
            outcome, error, kind = self._integrate(svc.name)
            if outcome == "created":
                created.append(svc.name)
            elif outcome == "present":
                present.append(svc.name)
            elif outcome == "failed":
                failed.append((svc.name, error or ""))
                if kind is not None:
                    kinds.append(kind)
        return IntegrationReport(
            len(candidates),
            tuple(created),
            tuple(present),
            tuple(failed),
            tuple(waiting),
            deferred,
            False,
            tuple(kinds),
        )

    def _still_ours(self) -> bool:
        """Renew the lease before each creation; if another process took it, stop."""
        with session_scope(self._sessions, write=True) as session:
            return store.try_acquire_lease(
                session, LEASE_NAME, self._holder, self._now(), self._ttl
            )

    def _integrate(self, name: str) -> tuple[str, str | None, FailureKind | None]:
        try:
            fresh = self._client.get_service(name)
            if not needs_integration(fresh, self._endpoint, self._types):
                self._record(name, succeeded=True)
                return "present", None, None
            self._client.create_prometheus_integration(name, self._endpoint)
        except ApiError as exc:
            if exc.status == 409 and "already exists" in exc.api_message.lower():
                self._record(name, succeeded=True)
                return "present", None, None
            if exc.status == 404:  # deleted between the listing and now: nothing to do
                return "gone", None, None
            attempt = self._record(name, succeeded=False, error=str(exc))
            log.warning(
                "integration failed; backing off",
                extra={
                    "event": "integration_failed",
                    "aiven_service_name": name,
                    "kind": str(exc.kind),
                    "error": str(exc),
                    "attempts": attempt.attempts if attempt else None,
                    "next_attempt_at": attempt.next_attempt_at.isoformat() if attempt else None,
                },
            )
            return "failed", str(exc), exc.kind
        self._record(name, succeeded=True)
        log.info(
            "integration created",
            extra={"event": "integration_created", "aiven_service_name": name},
        )
        return "created", None, None

    def _record(
        self, name: str, *, succeeded: bool, error: str | None = None
    ) -> store.Attempt | None:
        try:
            with session_scope(self._sessions, write=True) as session:
                previous = store.load_attempts(session, [name]).get(name)
                tries = 0 if succeeded else (previous.attempts if previous else 0) + 1
                return store.record_attempt(
                    session,
                    name,
                    self._now(),
                    succeeded=succeeded,
                    error=error,
                    backoff=timedelta(0)
                    if succeeded
                    else backoff_for(tries, self._base, self._cap),
                )
        except SQLAlchemyError:
            log.exception(
                "could not record integration attempt", extra={"aiven_service_name": name}
            )
            return None
