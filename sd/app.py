"""Wiring: settings -> clients, DB, integrator, owner resolver and the discovery loop."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from sd import dropconfirm
from sd.aiven import AivenClient
from sd.cloudfoundry import CloudController
from sd.config import SdSettings
from sd.dns import Resolver, overrides_resolver, system_resolver
from sd.guard import GuardSettings
from sd.http import DEFAULT_RETRY, RetryPolicy
from sd.integrator import Integrator
from sd.loop import Discovery
from sd.metrics import SdMetrics
from sd.owners import OwnerResolver
from sd.writer import TargetsState
from tenant_metrics.core.config import DatabaseSettings
from tenant_metrics.core.db import make_engine, make_session_factory, session_scope


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class SdApp:
    discovery: Discovery
    engine: Engine
    registry: CollectorRegistry
    state: TargetsState
    cloudcontroller: CloudController | None

    def close(self) -> None:
        self.discovery.aiven.close()
        if self.cloudcontroller is not None:
            self.cloudcontroller.close()
        self.engine.dispose()


def sd_engine(database: DatabaseSettings) -> Engine:
    """sd's engine: every wait bounded by the DB_* timeouts (tenant_metrics.core.db), and a
    fresh connection per unit of work (``pool_recycle=0``: sd opens a handful per cycle),
    so a pooled connection caught in a partition is never waited on again."""
    return make_engine(database.url, database.timeouts, pool_recycle=0)


def _drop_confirmed(
    sessions: sessionmaker[Session], now: Callable[[], datetime]
) -> Callable[[], str | None]:
    def confirmed() -> str | None:
        with session_scope(sessions) as session:
            row = dropconfirm.valid_confirmation(session, now())
        return row.confirmed_by if row else None

    return confirmed


def build(
    settings: SdSettings,
    *,
    registry: CollectorRegistry | None = None,
    resolver: Resolver | None = None,
    holder: str | None = None,
    dns_workers: int = 16,
    now: Callable[[], datetime] = utcnow,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> SdApp:
    """Every collaborator with a seam (clocks, sleep, resolver, registry) can be injected."""
    registry = registry or CollectorRegistry()
    if resolver is None:
        resolver = (
            overrides_resolver(settings.dns_overrides_file)
            if settings.dns_overrides_file
            else system_resolver
        )
    engine = sd_engine(settings.database)
    sessions = make_session_factory(engine)
    aiven = AivenClient(
        settings.aiven_api_url,
        settings.aiven_api_token,
        settings.aiven_project,
        timeout=settings.http_timeout_seconds,
        retry=retry,
        sleep=sleep,
    )
    cc = None
    if settings.cloudfoundry is not None:
        cf = settings.cloudfoundry
        cc = CloudController(
            cf.api_url,
            cf.client_id,
            cf.client_secret,
            timeout=settings.http_timeout_seconds,
            clock=monotonic,
            retry=retry,
            sleep=sleep,
        )
    holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    integrator = Integrator(
        aiven,
        sessions,
        settings.prometheus_endpoint_id,
        eligible_types=settings.eligible_types,
        holder=holder,
        now=now,
        max_per_cycle=settings.max_integrations_per_cycle,
    )
    owners = OwnerResolver(
        sessions,
        settings.service_prefix,
        cc,
        now=now,
        refresh_seconds=settings.names_refresh_seconds,
    )
    state = TargetsState()
    discovery = Discovery(
        aiven=aiven,
        integrator=integrator,
        owners=owners,
        resolver=resolver,
        targets_path=Path(settings.targets_file),
        state=state,
        metrics=SdMetrics(registry),
        endpoint_id=settings.prometheus_endpoint_id,
        eligible_types=settings.eligible_types,
        scrape_port=settings.scrape_port,
        dns_workers=dns_workers,
        api_clients=(cc,) if cc else (),
        guard_settings=GuardSettings(
            settings.max_target_drop, settings.drop_min_targets, settings.drop_confirm_cycles
        ),
        drop_confirmed=_drop_confirmed(sessions, now),
    )
    return SdApp(discovery, engine, registry, state, cc)
