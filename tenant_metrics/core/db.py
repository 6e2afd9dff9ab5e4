"""Engine, sessions and migrations: the database lifecycle kept outside the code that uses it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
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


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine tuned for the dialect: SQLite gets WAL, a busy timeout, foreign keys and
    BEGIN IMMEDIATE for write sessions (so concurrent writers queue instead of failing)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
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
    return create_engine(url, **kwargs)


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


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database to ``revision``; safe to run from many instances at once."""
    from alembic import command

    engine = make_engine(url)
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


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
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
