from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import OperationalError

from tenant_metrics.core import db
from tenant_metrics.fakes.tcpproxy import FaultProxy
from tests.conftest import _drop_postgres_database, _new_postgres_database


def test_upgrade_from_empty_creates_every_table(empty_database_url: str) -> None:
    db.upgrade(empty_database_url)
    engine = db.make_engine(empty_database_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"service_instances", "bindings", "audit_events", "service_owners", "leases",
            "integration_attempts", "alembic_version"} <= tables
    assert db.current_revision(empty_database_url) is not None


def test_upgrade_twice_is_a_no_op(empty_database_url: str) -> None:
    db.upgrade(empty_database_url)
    first = db.current_revision(empty_database_url)
    db.upgrade(empty_database_url)
    assert db.current_revision(empty_database_url) == first


def test_models_match_migrations(database_url: str) -> None:
    """The schema only changes through a migration: autogenerate must find nothing to do."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from tenant_metrics.core.models import Base

    engine = db.make_engine(database_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    # UtcDateTime vs DateTime(timezone=True) is the same column type in the database.
    real = [d for d in diff if not (isinstance(d, list) and d and d[0][0] == "modify_type")]
    assert real == []


# -- timeouts -------------------------------------------------------------------------


def test_timeouts_defaults_and_migration_limits() -> None:
    t = db.Timeouts()
    assert (t.connect_timeout, t.statement_timeout, t.lock_timeout, t.pool_timeout) == (5.0, 5.0, 3.0, 3.0)
    assert (t.keepalives_idle, t.keepalives_interval, t.keepalives_count) == (10, 5, 3)
    migrating = t.for_migrations()
    assert migrating.statement_timeout == migrating.lock_timeout == t.migration_statement_timeout == 300.0
    args = t.postgres_connect_args()
    assert args["tcp_user_timeout"] == 5000 and args["keepalives"] == 1 and args["connect_timeout"] == 5
    with pytest.raises(ValueError, match="lock_timeout"):
        db.Timeouts(lock_timeout=0)


def test_engine_applies_timeouts(empty_database_url: str) -> None:
    engine = db.make_engine(empty_database_url, db.Timeouts(statement_timeout=4, lock_timeout=2, pool_timeout=1.5))
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 2000
                return
            shown = {name: conn.exec_driver_sql(f"SHOW {name}").scalar() for name in (
                "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout",
                "client_connection_check_interval")}
            assert shown == {"statement_timeout": "4s", "lock_timeout": "2s",
                             "idle_in_transaction_session_timeout": "4s", "client_connection_check_interval": "1s"}
            params = conn.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
            assert params["tcp_user_timeout"] == "4000" and params["keepalives_idle"] == "10"
            assert params["keepalives_count"] == "3" and params["connect_timeout"] == "5"
        assert engine.pool.timeout() == 1.5  # type: ignore[attr-defined]
    finally:
        engine.dispose()


def bounded(call: Callable[[], object], seconds: float) -> tuple[BaseException | None, float]:
    """Run ``call`` in a thread; fail (rather than hang) if it is still waiting after ``seconds``.
    Returns what it raised (or None) and how long it took."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s"
    return outcome[0], time.monotonic() - started


@pytest.fixture
def postgres_url() -> Iterator[str]:
    name, url = _new_postgres_database()
    try:
        yield url
    finally:
        _drop_postgres_database(name)


def test_server_cancels_a_long_statement_and_the_connection_stays(postgres_url: str) -> None:
    engine = db.make_engine(postgres_url, db.Timeouts(statement_timeout=0.5))
    try:
        with engine.connect() as conn:
            started = time.monotonic()
            with pytest.raises(OperationalError) as caught:
                conn.execute(text("SELECT pg_sleep(5)"))
            assert time.monotonic() - started < 1.4  # the server's cancel, before our watchdog
            assert getattr(caught.value.orig, "sqlstate", None) == "57014" and not caught.value.connection_invalidated
            conn.rollback()
            assert conn.execute(text("SELECT pg_sleep(0.2), 1")).one()[1] == 1
    finally:
        engine.dispose()


def test_blackholed_database_errors_within_bounds_and_engine_recovers(postgres_url: str) -> None:
    """Neither the server nor the kernel can end these waits (the proxy acknowledges every
    byte): the watchdog ends a statement, libpq's connect_timeout a new connection."""
    with FaultProxy("127.0.0.1", 5432) as proxy:
        url = postgres_url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/")
        engine = db.make_engine(url, db.Timeouts(statement_timeout=1, connect_timeout=2))
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SELECT 1")).scalar() == 1
                proxy.set_mode("blackhole")
                error, took = bounded(lambda: conn.execute(text("SELECT 1")), 10)
                assert isinstance(error, OperationalError) and error.connection_invalidated
                assert took < 1 + db.WATCHDOG_GRACE + 1.5
            error, took = bounded(lambda: engine.connect().execute(text("SELECT 1")), 10)
            assert isinstance(error, OperationalError) and took < 2 + 1.5
            proxy.set_mode("pass")
            with engine.connect() as conn:
                assert conn.execute(text("SELECT 1")).scalar() == 1
        finally:
            engine.dispose()


def test_pre_ping_of_a_blackholed_connection_is_bounded(postgres_url: str) -> None:
    """The gateway's and sd's engines ping before each checkout: that wait is bounded too."""
    with FaultProxy("127.0.0.1", 5432) as proxy:
        url = postgres_url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/")
        engine = db.make_engine(url, db.Timeouts(statement_timeout=1, connect_timeout=2))
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SELECT 1")).scalar() == 1
            proxy.set_mode("blackhole")
            # The ping is severed after 2 s, then a new connection times out after 2 s.
            error, took = bounded(lambda: engine.connect().close(), 15)
            assert isinstance(error, OperationalError) and took < 2 + 2 + 2
            proxy.set_mode("pass")
            with engine.connect() as conn:
                assert conn.execute(text("SELECT 1")).scalar() == 1
        finally:
            engine.dispose()


def test_watchdog_severs_only_calls_past_their_deadline() -> None:
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    try:
        late = db.WATCHDOG.arm(a.fileno(), 0.2)
        on_time = db.WATCHDOG.arm(c.fileno(), 0.2)
        db.WATCHDOG.disarm(on_time)
        a.settimeout(5)
        started = time.monotonic()
        assert a.recv(1) == b""  # woken by the shutdown, not by the peer
        assert 0.15 < time.monotonic() - started < 2
        db.WATCHDOG.disarm(late)
        time.sleep(0.3)
        d.sendall(b"x")
        c.settimeout(1)
        assert c.recv(1) == b"x"  # the disarmed one was left alone
    finally:
        for s in (a, b, c, d):
            s.close()
