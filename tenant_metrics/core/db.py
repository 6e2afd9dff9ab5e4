"""Engine, sessions and migrations: the database lifecycle kept outside the code that uses it.

Every engine is bounded in time (``Timeouts``): the server cancels long statements and lock
waits, the kernel gives up on unacknowledged bytes and dead peers, and a watchdog thread of
ours severs the socket of any call that outlives its deadline. The last one matters when
the network swallows packets but something still acknowledges them (a proxy, a NAT, a
failover moving the address): then neither the server nor the kernel ever ends the wait.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from tenant_metrics.core.errors import UpstreamError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# pg_advisory_lock key held around "db upgrade": every instance of a rolling deploy may
# run the migration at once; only one at a time does the work.
MIGRATION_LOCK_KEY = 7_421_001

# How long past the server's statement_timeout our own watchdog waits before it severs the
# connection: the server's cancel, when it can arrive, is the cleaner end.
WATCHDOG_GRACE = 1.0
# PostgreSQL (14+) checks this often whether the client is still there while a statement
# runs, so a statement whose client gave up is cancelled (and never commits) in about 1 s.
CLIENT_CHECK_INTERVAL_MS = 1000


@dataclass(frozen=True)
class Timeouts:
    """How long each database wait may last, in seconds (keepalives: seconds and probes).

    The same fields and defaults as core.config's DatabaseSettings (DB_* variables)."""

    connect_timeout: float = 5.0
    statement_timeout: float = 5.0
    lock_timeout: float = 3.0
    pool_timeout: float = 3.0
    keepalives_idle: int = 10
    keepalives_interval: int = 5
    keepalives_count: int = 3
    migration_statement_timeout: float = 300.0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value > 0:
                raise ValueError(f"database timeout {name} must be positive, not {value!r}")

    def for_migrations(self) -> Timeouts:
        """A migration may wait for another instance's migration and rewrite big tables."""
        longer = self.migration_statement_timeout
        return replace(self, statement_timeout=longer, lock_timeout=longer)

    def postgres_connect_args(self) -> dict[str, Any]:
        """libpq parameters: server-side limits in ``options``, kernel-side TCP limits."""
        ms = _ms
        options = " ".join((
            f"-c statement_timeout={ms(self.statement_timeout)}",
            f"-c lock_timeout={ms(self.lock_timeout)}",
            f"-c idle_in_transaction_session_timeout={ms(self.statement_timeout)}",
            f"-c client_connection_check_interval={CLIENT_CHECK_INTERVAL_MS}",
        ))
        return {
            # libpq counts whole seconds and treats less than 2 as 2.
            "connect_timeout": max(2, int(round(self.connect_timeout))),
            "options": options,
            "keepalives": 1,
            "keepalives_idle": self.keepalives_idle,
            "keepalives_interval": self.keepalives_interval,
            "keepalives_count": self.keepalives_count,
            # Bytes sent but unacknowledged this long (a partition) end the connection,
            # where keepalives alone would wait for the connection to fall idle first.
            "tcp_user_timeout": ms(self.statement_timeout),
        }


def _ms(seconds: float) -> int:
    return max(1, int(round(seconds * 1000)))


class Watchdog:
    """Severs (shuts down) a connection's socket when a call on it outlives its deadline.

    One thread per process serves every engine; arming costs a lock and a heap push, not
    a thread. The blocked caller then gets an ordinary disconnect error from the driver,
    SQLAlchemy invalidates the pool, and the next checkout connects afresh.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._armed: dict[int, tuple[int, float]] = {}  # token -> (fd, seconds)
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self.severed = 0

    def arm(self, fd: int, seconds: float) -> int:
        token = next(self._tokens)
        with self._cond:
            if self._thread is None or self._pid != os.getpid():  # none yet, or we were forked
                self._heap.clear()
                self._armed.clear()
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="db-watchdog", daemon=True)
                self._thread.start()
            self._armed[token] = (fd, seconds)
            heapq.heappush(self._heap, (time.monotonic() + seconds, token))
            if self._heap[0][1] == token:
                self._cond.notify()
        return token

    def disarm(self, token: int) -> None:
        with self._cond:
            self._armed.pop(token, None)

    @contextmanager
    def watching(self, fd: int | None, seconds: float) -> Iterator[None]:
        token = self.arm(fd, seconds) if fd is not None and fd >= 0 else None
        try:
            yield
        finally:
            if token is not None:
                self.disarm(token)

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][1] not in self._armed:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait(timeout=60)
                    continue
                due, token = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cond.wait(timeout=wait)
                    continue
                heapq.heappop(self._heap)
                fd, seconds = self._armed.pop(token)
                # Under the lock: the owner cannot disarm (and so cannot close the fd) meanwhile.
                if _sever(fd):
                    self.severed += 1
                    log.warning("database call exceeded its %.1f s deadline: connection severed", seconds,
                                extra={"deadline_s": seconds})


def _sever(fd: int) -> bool:
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return False
    try:
        sock.shutdown(socket.SHUT_RDWR)
        return True
    except OSError:
        return False
    finally:
        sock.close()


WATCHDOG = Watchdog()


def connection_fd(dbapi_connection: Any) -> int | None:
    """The socket of a psycopg 3 connection (None for SQLite: it has no network to lose)."""
    pgconn = getattr(dbapi_connection, "pgconn", None)
    if pgconn is None:
        return None
    try:
        return int(pgconn.socket)
    except Exception:  # closed: nothing left to sever
        return None


def make_engine(url: str, timeouts: Timeouts | None = None, **kwargs: Any) -> Engine:
    """An engine tuned for the dialect, every wait bounded by ``timeouts`` (defaults if None).

    SQLite gets WAL, a busy timeout (``lock_timeout``), foreign keys and BEGIN IMMEDIATE
    for write sessions (so concurrent writers queue instead of failing). PostgreSQL gets
    server-side statement/lock/idle-in-transaction timeouts, connect timeout, TCP
    keepalives and tcp_user_timeout, a pool timeout, and the watchdog on every statement
    (``statement_timeout`` + WATCHDOG_GRACE).
    """
    t = timeouts or Timeouts()
    if url.startswith("sqlite"):
        busy_ms = _ms(t.lock_timeout)
        engine = create_engine(url, connect_args={"timeout": t.lock_timeout, "check_same_thread": False}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            immediate = conn.get_execution_options().get("write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 5)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_recycle", 1800)
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_timeout", t.pool_timeout)
    connect_args = {**t.postgres_connect_args(), **kwargs.pop("connect_args", {})}
    engine = create_engine(url, connect_args=connect_args, **kwargs)
    watch_statements(engine, t.statement_timeout + WATCHDOG_GRACE)
    _bound_pings(engine, t.connect_timeout)
    return engine


def _bound_pings(engine: Engine, seconds: float) -> None:
    """The pool's pre-ping runs outside every statement event: watch it too, else a
    checkout of a connection caught in a blackhole waits forever."""
    dialect = engine.dialect
    ping = dialect.do_ping

    def do_ping(dbapi_connection: Any) -> bool:
        with WATCHDOG.watching(connection_fd(dbapi_connection), seconds):
            return ping(dbapi_connection)

    dialect.do_ping = do_ping  # type: ignore[method-assign]


def watch_statements(engine: Engine, seconds: float) -> None:
    """Arm the watchdog around every statement on ``engine``."""

    @event.listens_for(engine, "before_cursor_execute")
    def _arm(conn: Connection, cursor: Any, *_: Any) -> None:
        fd = connection_fd(getattr(cursor, "connection", None))
        if fd is not None:
            conn.info["tm_watchdog"] = WATCHDOG.arm(fd, seconds)

    def _disarm(conn: Connection, *_: Any) -> None:
        token = conn.info.pop("tm_watchdog", None)
        if token is not None:
            WATCHDOG.disarm(token)

    event.listen(engine, "after_cursor_execute", _disarm)

    @event.listens_for(engine, "handle_error")
    def _disarm_on_error(context: Any) -> None:
        if context.connection is not None:
            _disarm(context.connection)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session], write: bool = False) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error.

    ``write=True`` takes SQLite's write lock up front (BEGIN IMMEDIATE) so two writers
    never deadlock upgrading a read lock; on PostgreSQL it changes nothing.
    """
    session = factory()
    try:
        if write:
            session.connection(execution_options={"write": True})
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def ping(engine: Engine) -> None:
    """Raise UpstreamError if the database cannot answer a trivial query."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise UpstreamError("database unavailable") from exc


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head", timeouts: Timeouts | None = None) -> None:
    """Migrate the database to ``revision``; safe to run from many instances at once.

    Statements and lock waits (the advisory lock included) get
    ``migration_statement_timeout`` instead of the request-sized limits."""
    from alembic import command

    engine = make_engine(url, (timeouts or Timeouts()).for_migrations())
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
                conn.commit()
            try:
                cfg = alembic_config(url)
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
                conn.commit()
            finally:
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
                    conn.commit()
    finally:
        engine.dispose()


def head_revision() -> str | None:
    """The newest migration this code ships."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(url: str, timeouts: Timeouts | None = None) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url, timeouts)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def describe_failure(url: str, exc: BaseException) -> str:
    """One safe line for an operator: which database (host, port, name; never the password)
    and the driver's own reason, e.g. ``database test at 127.0.0.1:5432: connection refused``."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            where = f"sqlite {parsed.database or ':memory:'}"
        else:
            where = f"database {parsed.database or '(default)'} at {parsed.host or 'localhost'}:{parsed.port or 5432}"
        secret = parsed.password
    except Exception:  # an unparseable URL must still give a line, and never echo it
        where, secret = "database (unparseable DATABASE_URL)", None
    cause: BaseException = exc
    while not isinstance(cause, SQLAlchemyError) and cause.__cause__ is not None:  # our UpstreamError
        cause = cause.__cause__
    while getattr(cause, "orig", None) is not None:  # SQLAlchemy's wrapper -> the driver's error
        cause = cause.orig  # type: ignore[attr-defined]
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    reason = "; ".join(lines[:2]) or type(cause).__name__
    reason = reason.replace("FATAL:  ", "").replace("ERROR:  ", "")
    if secret:
        reason = reason.replace(str(secret), "***")
    return f"{where}: {reason}"
