"""The discovery cycle (fetch -> integrate -> owners -> resolve -> build -> write) and its loop.

No error escapes a cycle: each is logged as one JSON line, counted by stage and kind, and
the last good targets stay in place (on disk and over http_sd), never emptied or torn.
"""

from __future__ import annotations

import gc
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from sd import guard, writer
from sd.aiven import AivenClient, AivenService
from sd.dns import Resolver, resolve_services
from sd.http import ApiError, FailureKind
from sd.integrator import IntegrationReport, Integrator
from sd.metrics import SdMetrics
from sd.owners import OwnerReport, OwnerResolver
from sd.targets import build_targets, group_key, is_scrapable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Failure:
    stage: str
    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class CycleReport:
    ok: bool
    failures: tuple[Failure, ...] = ()
    services: int = 0
    target_groups: int = 0
    written: bool = False
    integrations: IntegrationReport | None = field(default=None, compare=False)
    owners: OwnerReport | None = field(default=None, compare=False)
    duration: float = 0.0
    withheld: int = 0  # target groups a withheld mass drop would have removed


class Discovery:
    def __init__(
        self,
        *,
        aiven: AivenClient,
        integrator: Integrator,
        owners: OwnerResolver,
        resolver: Resolver,
        targets_path: Path,
        state: writer.TargetsState,
        metrics: SdMetrics,
        endpoint_id: str,
        eligible_types: tuple[str, ...],
        scrape_port: int,
        wall_clock: Callable[[], float] = time.time,
        dns_workers: int = 16,
        api_clients: tuple[object, ...] = (),
        guard_settings: guard.GuardSettings | None = None,
        drop_confirmed: Callable[[], str | None] | None = None,
    ) -> None:
        """``drop_confirmed`` asks the shared DB who confirmed a mass drop (None: nobody);
        it is called only in a cycle that would withhold one."""
        self.aiven = aiven
        self.integrator = integrator
        self.owners = owners
        self.resolver = resolver
        self.targets_path = targets_path
        self.state = state
        self.metrics = metrics
        self.endpoint_id = endpoint_id
        self.eligible_types = eligible_types
        self.scrape_port = scrape_port
        self.wall_clock = wall_clock
        self.dns_workers = dns_workers
        self._api_clients = (aiven, *api_clients)
        self._api_seen: dict[int, int] = {}
        self._addresses: dict[str, list[str]] = {}
        self._empty_listings = 0
        self.last_success: float | None = None
        self.guard_settings = guard_settings or guard.GuardSettings()
        self.drop_confirmed = drop_confirmed
        self._pending_drop: guard.PendingDrop | None = None
        if state.get() is None and targets_path.exists():
            state.set(targets_path.read_bytes())  # serve the last good targets from the start
        published = state.get()
        self._published: frozenset[str] | None = (
            writer.rendered_keys(published) if published is not None else None
        )

    # -- one cycle ------------------------------------------------------------------------
    def run_cycle(self) -> CycleReport:
        started = time.perf_counter()
        failures: list[Failure] = []
        # A cycle builds and drops ~1M short-lived acyclic objects at 10,000 services; the cyclic
        # GC rescanning them cost ~40% of the cycle's CPU. Pause it for the cycle, as aiven.py does
        # for the parse; anything cyclic left over is collected when it is back on.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            report = self._cycle(failures)
        finally:
            if was_enabled:
                gc.enable()
        duration = time.perf_counter() - started
        self.metrics.cycle_duration.observe(duration)
        self._count_api_calls()
        ok = not failures
        self.metrics.cycles.labels("success" if ok else "failure").inc()
        if ok:
            self.last_success = self.wall_clock()
            self.metrics.last_success.set(self.last_success)
        log.info(
            "sd cycle",
            extra={
                "event": "sd_cycle",
                "ok": ok,
                "duration_seconds": round(duration, 3),
                "services": report.services,
                "target_groups": report.target_groups,
                "written": report.written,
                "withheld": report.withheld,
                "failures": [f"{f.stage}/{f.kind}: {f.message}" for f in failures],
            },
        )
        return CycleReport(
            ok,
            tuple(failures),
            report.services,
            report.target_groups,
            report.written,
            report.integrations,
            report.owners,
            duration,
            report.withheld,
        )

    def _fail(self, failures: list[Failure], stage: str, exc: BaseException) -> None:
        kind = (
            str(exc.kind)
            if isinstance(exc, ApiError)
            else (
                FailureKind.DATABASE if isinstance(exc, SQLAlchemyError) else FailureKind.INTERNAL
            )
        )
        message = (
            str(exc)
            if not isinstance(exc, SQLAlchemyError)
            else f"database error: {type(exc).__name__}"
        )
        failures.append(Failure(stage, str(kind), message))
        self.metrics.failures.labels(stage, str(kind)).inc()
        log.error(
            "sd stage failed; last good targets kept",
            extra={"event": "sd_stage_failed", "stage": stage, "kind": str(kind), "error": message},
        )

    def _cycle(self, failures: list[Failure]) -> CycleReport:
        try:
            services = self.aiven.list_services()
        except ApiError as exc:
            self._fail(failures, "aiven_list", exc)
            return CycleReport(False)
        self.metrics.observe_services(services)
        if not services and self.state.get() not in (None, b"[]\n"):
            # An empty but successful listing would wipe every target: believe it only twice running.
            self._empty_listings += 1
            if self._empty_listings < 2:
                failures.append(
                    Failure("aiven_list", "suspicious_empty", "empty service list; confirming")
                )
                self.metrics.failures.labels("aiven_list", "suspicious_empty").inc()
                return CycleReport(False)
        else:
            self._empty_listings = 0
        eligible = [s for s in services if s.type in self.eligible_types]
        integrations = self._integrate(services, failures)
        try:
            owners = self.owners.resolve(eligible)
        except (ApiError, SQLAlchemyError) as exc:
            self._fail(failures, "owners", exc)
            return CycleReport(False, services=len(services), integrations=integrations)
        if owners.cc_error is not None:
            self._fail(failures, "owners", owners.cc_error)
        self.metrics.owners_unresolved.set(len(owners.unresolved))
        self.metrics.owners_missing.set(len(owners.missing))
        self.metrics.names_unparsed.set(len(owners.unparsed))
        integrated_now = integrations.created if integrations else ()
        scrapable = [
            s
            for s in eligible
            if s.name in owners.owners
            and is_scrapable(s, self.endpoint_id, self.eligible_types, integrated_now)
        ]
        addresses, dns_failures = resolve_services(
            scrapable, self.resolver, self._addresses, self.dns_workers
        )
        self._addresses = addresses
        if dns_failures:
            self.metrics.dns_failures.inc(dns_failures)
        groups = build_targets(
            scrapable,
            owners.owners,
            addresses,
            port=self.scrape_port,
            endpoint_id=self.endpoint_id,
            eligible_types=self.eligible_types,
            integrated_now=integrated_now,
        )
        keys = frozenset(group_key(g) for g in groups)
        decision = self._guard(keys, failures)
        if not decision.publish:
            return CycleReport(
                not failures,
                services=len(services),
                target_groups=len(groups),
                integrations=integrations,
                owners=owners,
                withheld=decision.dropped,
            )
        content = writer.render(groups)
        try:
            written = writer.write_if_changed(self.targets_path, content)
        except OSError as exc:
            failures.append(
                Failure("write", "io", f"cannot write {self.targets_path}: {exc.strerror}")
            )
            self.metrics.failures.labels("write", "io").inc()
            return CycleReport(
                False, services=len(services), integrations=integrations, owners=owners
            )
        self.state.set(content)
        self._published = keys
        self.metrics.targets.set(len(groups))
        if written:
            self.metrics.target_writes.inc()
        return CycleReport(
            True,
            services=len(services),
            target_groups=len(groups),
            written=written,
            integrations=integrations,
            owners=owners,
        )

    def _guard(self, keys: frozenset[str], failures: list[Failure]) -> guard.Decision:
        """The mass-deletion guard: withhold a large drop until cycles or an operator confirm it."""
        decision = guard.decide(self._published, keys, self._pending_drop, self.guard_settings)
        operator = None
        if decision.verdict is guard.Verdict.WITHHOLD:
            operator = self._operator_confirmed(failures)
        if operator is not None:
            decision = guard.decide(
                self._published,
                keys,
                self._pending_drop,
                self.guard_settings,
                operator_confirmed=True,
            )
        self._pending_drop = decision.pending
        pending = decision.pending
        self.metrics.drop_withheld.set(decision.dropped if pending else 0)
        self.metrics.drop_pending_cycles.set(pending.cycles if pending else 0)
        details = {
            "previous_target_groups": decision.previous,
            "new_target_groups": len(keys),
            "dropped_target_groups": decision.dropped,
            "drop_share": round(decision.share, 3),
        }
        if pending is not None:
            self.metrics.drops_withheld.inc()
            log.warning(
                "sd withholding a mass target drop; last good targets kept",
                extra={
                    "event": "sd_target_drop_withheld",
                    **details,
                    "cycle": pending.cycles,
                    "confirm_cycles": self.guard_settings.confirm_cycles,
                    "confirm_with": "tenant-metrics sd confirm-drop",
                },
            )
        elif decision.verdict is not guard.Verdict.PUBLISH:
            self.metrics.drops_applied.labels(str(decision.verdict)).inc()
            log.warning(
                "sd applying a confirmed mass target drop",
                extra={
                    "event": "sd_target_drop_applied",
                    **details,
                    "confirmed_by": str(decision.verdict),
                    **({"operator": operator} if operator is not None else {}),
                },
            )
        return decision

    def _operator_confirmed(self, failures: list[Failure]) -> str | None:
        if self.drop_confirmed is None:
            return None
        try:
            return self.drop_confirmed()
        except SQLAlchemyError as exc:  # no answer is no confirmation: keep withholding
            self._fail(failures, "drop_guard", exc)
            return None

    def _integrate(
        self, services: list[AivenService], failures: list[Failure]
    ) -> IntegrationReport | None:
        try:
            report = self.integrator.run(services)
        except (ApiError, SQLAlchemyError) as exc:
            self._fail(failures, "integrate", exc)
            return None
        self.metrics.integrations_created.inc(len(report.created))
        self.metrics.integrations_failed.inc(len(report.failed))
        self.metrics.integrations_backing_off.set(len(report.backing_off))
        for (name, error), kind in zip(report.failed, report.errors, strict=False):
            failures.append(Failure("integrate", str(kind), f"{name}: {error}"))
            self.metrics.failures.labels("integrate", str(kind)).inc()
        return report

    def _count_api_calls(self) -> None:
        for client in self._api_clients:
            calls = int(getattr(client, "calls", 0))
            delta = calls - self._api_seen.get(id(client), 0)
            self._api_seen[id(client)] = calls
            if delta > 0:
                self.metrics.api_requests.labels(
                    getattr(getattr(client, "http", None), "api", "unknown")
                ).inc(delta)

    # -- forever --------------------------------------------------------------------------
    def run_forever(
        self,
        stop: threading.Event,
        interval: float,
        jitter: float = 0.1,
        rng: random.Random | None = None,
    ) -> None:
        """Cycle every ``interval`` seconds (+-jitter, so several sd processes drift apart)
        until ``stop`` is set; a cycle in progress finishes first."""
        rng = rng or random.Random()
        while not stop.is_set():
            try:
                self.run_cycle()
            except Exception:  # a bug must not end the loop: log it, keep the last good targets
                log.exception("sd cycle crashed", extra={"event": "sd_cycle_crashed"})
                self.metrics.failures.labels("cycle", "internal").inc()
            stop.wait(max(0.0, interval * (1 + rng.uniform(-jitter, jitter))))
