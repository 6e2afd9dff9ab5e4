"""The broker under gunicorn, with real PostgreSQL behind a FaultProxy that hangs or resets.

A hung database must give OSB 503 JSON within the request deadline (never a worker
timeout or an HTML 500), /v2/catalog must not need the database, nothing may be applied
after its client got an error, and the broker must recover without a restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from broker.config import from_env
from broker.osb import to_osb_error
from broker.store import DEFAULT_REQUEST_TIMEOUT, broker_timeouts, request_timeout_from_env
from tenant_metrics.core import db
from tenant_metrics.core.errors import ConfigError
from tenant_metrics.core.models import AuditEvent, Binding, ServiceInstance
from tenant_metrics.fakes.tcpproxy import FaultProxy
from tenant_metrics.world import Child, start_part
from tests.broker.conftest import PASSWORD, USERNAME, Osb, broker_env
from tests.conftest import _drop_postgres_database, _new_postgres_database

# The broker answers within BROKER_REQUEST_TIMEOUT (4.5 s); the bound tolerates a busy CI.
BOUND = 8.0
RECOVERY = 10.0


@dataclass
class World:
    osb: Osb
    proxy: FaultProxy
    direct: Engine  # to PostgreSQL itself, around the proxy
    log_path: Path

    def count(self, model: type, **where: str) -> int:
        table = model.__table__  # type: ignore[attr-defined]
        query = select(func.count()).select_from(table)
        for name, value in where.items():
            query = query.where(table.c[name] == value)
        with self.direct.connect() as conn:
            return int(conn.scalar(query) or 0)

    def wait_for_lock_waiter(self, within: float = 5.0) -> None:
        """Until a broker statement is waiting on a lock in PostgreSQL (or fail)."""
        deadline = time.monotonic() + within
        query = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                     "AND wait_event_type = 'Lock' AND query LIKE '%audit_events%'")
        while True:
            with self.direct.connect() as conn:
                if conn.scalar(query):
                    return
            assert time.monotonic() < deadline, "no broker statement ever waited on the lock"
            time.sleep(0.05)

    def actions(self, instance_id: str) -> list[str]:
        t = AuditEvent.__table__
        with self.direct.connect() as conn:
            return list(conn.scalars(select(t.c.action).where(t.c.instance_id == instance_id).order_by(t.c.id)))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    name, url = _new_postgres_database()
    proxy = FaultProxy("127.0.0.1", 5432).start()
    direct = create_engine(url)
    broker: Child | None = None
    log_path = tmp_path / "broker.log"
    try:
        db.upgrade(url)
        proxied = url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/")
        broker = start_part("broker", ["--workers", "2"], tmp_path, broker_env(proxied, LOG_LEVEL="INFO"))
        log_path = broker.log_path
        osb = Osb(broker.url, from_env(broker_env(proxied)))
        yield World(osb, proxy, direct, log_path)
        osb.session.close()
    finally:
        if broker is not None:
            broker.stop()
        proxy.close()
        direct.dispose()
        _drop_postgres_database(name)
    log_text = log_path.read_text()
    assert "WORKER TIMEOUT" not in log_text and "Traceback" not in log_text, log_text[-3000:]


def timed(call: object, *args: object, **kw: object) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = call(*args, **kw)  # type: ignore[operator]
    return response, time.monotonic() - started


def assert_osb_503(response: requests.Response, elapsed: float) -> None:
    assert response.status_code == 503, (response.status_code, response.text[:500])
    assert response.headers["Content-Type"].startswith("application/json")
    description = response.json()["description"]
    assert "database" in description and "retry" in description
    for internal in ("psycopg", "sqlalchemy", "SELECT", "INSERT", "Traceback", "127.0.0.1"):
        assert internal not in description, description
    assert elapsed < BOUND, elapsed


def catalog(osb: Osb) -> tuple[requests.Response, float]:
    return timed(requests.get, osb.base + "/v2/catalog", auth=(USERNAME, PASSWORD),
                 headers={"X-Broker-API-Version": "2.17"}, timeout=30)


def until_answered(call: object, *args: object) -> tuple[requests.Response, float]:
    """Retry until the broker answers other than 503; returns that answer and the time taken."""
    started = time.monotonic()
    while True:
        response = call(*args)  # type: ignore[operator]
        if response.status_code != 503 or time.monotonic() - started > RECOVERY:
            return response, time.monotonic() - started
        time.sleep(0.2)


def test_blackholed_database_gives_503_in_seconds_then_recovers_without_restart(world: World) -> None:
    osb = world.osb
    for i in range(4):  # warm both workers' pools: their connections will be caught in the blackhole
        assert osb.provision(f"warm-{i}").status_code == 201
    world.proxy.set_mode("blackhole")

    response, elapsed = catalog(osb)
    assert response.status_code == 200 and elapsed < 1.0, (response.status_code, elapsed)
    assert response.json()["services"]

    for attempt in range(3):  # pooled connections, then new ones that never get an answer
        response, elapsed = timed(osb.bind, "warm-0", f"bind-{attempt}")
        assert_osb_503(response, elapsed)
    response, elapsed = timed(osb.provision, "hung-1")
    assert_osb_503(response, elapsed)
    ready, elapsed = timed(requests.get, osb.base + "/readyz", timeout=30)
    assert ready.status_code == 503 and elapsed < BOUND and ready.json()["description"]

    world.proxy.set_mode("pass")
    # Nothing the clients were told failed was applied, and a retry does it now.
    assert world.count(Binding) == 0 and world.count(ServiceInstance, id="hung-1") == 0
    response, elapsed = until_answered(osb.bind, "warm-0", "bind-0")
    assert response.status_code == 201 and elapsed < RECOVERY, (response.text, elapsed)
    for _ in range(4):  # every worker answers again, on fresh connections
        assert osb.provision("hung-1").status_code in (200, 201)
    assert world.count(ServiceInstance, id="hung-1") == 1
    assert world.actions("warm-0") == ["provision", "bind"]
    assert "connection severed" in world.log_path.read_text()


def test_database_hanging_mid_transaction_applies_nothing_and_a_retry_succeeds(world: World) -> None:
    """Deprovision is two statements in one transaction: the database takes the first, then
    hangs. The client gets 503; the transaction never commits; the retry does the work."""
    osb = world.osb
    assert osb.provision("inst-1").status_code == 201
    assert osb.bind("inst-1", "bind-1").status_code == 201

    locker = world.direct.connect()
    locker.execute(text("LOCK TABLE bindings IN ACCESS EXCLUSIVE MODE"))  # the 2nd statement waits
    result: list[tuple[requests.Response, float]] = []
    call = threading.Thread(target=lambda: result.append(timed(osb.deprovision, "inst-1")))
    call.start()
    try:
        world.wait_for_lock_waiter()  # the row lock is taken; the cascade waits on the table lock
        world.proxy.set_mode("blackhole")
    finally:
        locker.rollback()  # the database goes on, but nothing reaches the broker any more
        locker.close()
    call.join(timeout=30)
    assert not call.is_alive()
    assert_osb_503(*result[0])

    world.proxy.set_mode("pass")
    assert world.count(ServiceInstance, id="inst-1") == 1 and world.count(Binding) == 1
    assert world.actions("inst-1") == ["provision", "bind"]
    response, elapsed = until_answered(osb.deprovision, "inst-1")
    assert response.status_code == 200 and elapsed < RECOVERY, (response.text, elapsed)
    assert world.count(ServiceInstance) == 0 and world.count(Binding) == 0
    assert world.actions("inst-1") == ["provision", "bind", "deprovision"]


def test_table_lock_gives_503_nothing_half_written(world: World) -> None:
    osb = world.osb
    assert osb.provision("inst-1").status_code == 201
    locker = world.direct.connect()
    try:
        locker.execute(text("LOCK TABLE bindings IN ACCESS EXCLUSIVE MODE"))
        response, elapsed = timed(osb.bind, "inst-1", "bind-1")
        assert_osb_503(response, elapsed)
        assert "lock" in response.json()["description"]
        # What does not need the locked table still works meanwhile.
        assert osb.provision("inst-2").status_code == 201
        response, elapsed = catalog(osb)
        assert response.status_code == 200 and elapsed < 1.0
    finally:
        locker.rollback()
        locker.close()
    assert world.count(Binding) == 0 and world.actions("inst-1") == ["provision"]
    assert osb.bind("inst-1", "bind-1").status_code == 201
    assert world.actions("inst-1") == ["provision", "bind"]


def test_reset_connections_give_503_at_once_then_recover(world: World) -> None:
    osb = world.osb
    assert osb.provision("inst-1").status_code == 201
    world.proxy.set_mode("reset")
    for i in range(3):
        response, elapsed = timed(osb.bind, "inst-1", f"bind-{i}")
        assert_osb_503(response, elapsed)
        assert elapsed < 2.0, elapsed  # a refused connection needs no timeout
    world.proxy.set_mode("pass")
    assert world.count(Binding) == 0
    response, elapsed = until_answered(osb.bind, "inst-1", "bind-0")
    assert response.status_code == 201 and elapsed < RECOVERY, (response.text, elapsed)


def test_broker_database_timeouts_fit_inside_the_request_deadline() -> None:
    assert request_timeout_from_env({}) == DEFAULT_REQUEST_TIMEOUT == 4.5
    assert request_timeout_from_env({"BROKER_REQUEST_TIMEOUT": "10"}) == 10.0
    for bad in ("soon", "0", "0.5", "31", "nan"):
        with pytest.raises(ConfigError, match="BROKER_REQUEST_TIMEOUT"):
            request_timeout_from_env({"BROKER_REQUEST_TIMEOUT": bad})
    t = broker_timeouts(4.5)
    # A lock wait ends server-side (a clean 503) before the deadline; connect leaves time.
    assert t.lock_timeout < t.statement_timeout < 4.5 and t.connect_timeout <= 2.25 and t.pool_timeout <= 2.25
    assert broker_timeouts(30.0) == db.Timeouts()  # a long deadline keeps the defaults


def test_a_database_error_escaping_the_store_is_a_503_without_internals() -> None:
    error = to_osb_error(OperationalError("SELECT secret FROM bindings", {}, Exception("psycopg: at 10.0.0.1")), None)
    assert error.status == 503 and error.body() == {"description": "database unavailable; please retry later"}
    timeout = to_osb_error(PoolTimeout("QueuePool limit of size 5 overflow 10 reached"), None)
    assert timeout.status == 503 and "QueuePool" not in timeout.description
