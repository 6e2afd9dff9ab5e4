"""Issue 14, the operator's side: `db upgrade`, `db current` and `check` against a database
that is missing, refuses, resets, hangs or holds a lock. Each ends within a bound with a
non-zero exit and one line on stderr naming host, port, database and the driver's reason,
never the password, never a traceback. Real PostgreSQL (127.0.0.1:5432), real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from tenant_metrics.core import db
from tenant_metrics.core.config import DatabaseSettings
from tenant_metrics.fakes.tcpproxy import FaultProxy
from tenant_metrics.world import free_port
from tests.conftest import _drop_postgres_database, _new_postgres_database

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-Pa55word-never-shown"
COMMANDS = (("db", "upgrade"), ("db", "current"), ("check", "gateway"))


def _url(port: int, dbname: str = "test") -> str:
    return f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:{port}/{dbname}"


def _run(url: str, *args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
            "PROMETHEUS_URLS": "http://127.0.0.1:9090", "DATABASE_URL": url, **env}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "tenant_metrics", *args], cwd=ROOT, env=base,
                          capture_output=True, text=True, timeout=60)
    return done, time.monotonic() - started


def _assert_one_clear_line(done: subprocess.CompletedProcess[str], *expected: str) -> str:
    everything = done.stdout + done.stderr
    assert done.returncode != 0, everything
    assert "Traceback" not in everything
    assert PASSWORD not in everything
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_refused_port(command: tuple[str, ...]) -> None:
    port = free_port()
    done, elapsed = _run(_url(port), *command)
    line = _assert_one_clear_line(done, f"127.0.0.1:{port}", "database test", "refused")
    assert "database unavailable" in line
    assert elapsed < 15


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_missing_database(command: tuple[str, ...]) -> None:
    name = "tm_missing_" + uuid.uuid4().hex[:8]
    done, elapsed = _run(_url(5432, name), *command)
    _assert_one_clear_line(done, "127.0.0.1:5432", f"database {name}", "does not exist")
    assert elapsed < 15


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", 5432) as p:
        yield p


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_reset_connections(proxy: FaultProxy, command: tuple[str, ...]) -> None:
    proxy.set_mode("reset")
    done, elapsed = _run(_url(proxy.port), *command)
    _assert_one_clear_line(done, f"127.0.0.1:{proxy.port}", "database test")
    assert proxy.accepted >= 1  # the failure came through the proxy, not from elsewhere
    assert elapsed < 15


@pytest.fixture(scope="module")
def startup_seconds() -> float:
    """How long the CLI takes to start and fail at once (a refused port) on this machine now:
    the blackhole's wait is measured on top of it (imports alone take seconds under load)."""
    return min(_run(_url(free_port()), "db", "current")[1] for _ in range(2))


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_blackhole_is_bounded_by_the_default_connect_timeout(
    proxy: FaultProxy, command: tuple[str, ...], startup_seconds: float
) -> None:
    proxy.set_mode("blackhole")
    done, elapsed = _run(_url(proxy.port), *command)
    _assert_one_clear_line(done, f"127.0.0.1:{proxy.port}", "database test", "timeout")
    assert proxy.accepted >= 1
    waited = elapsed - startup_seconds
    # DB_CONNECT_TIMEOUT's default (5 s) did the bounding; the margin is for a loaded machine.
    assert 3.5 <= waited < 10, (elapsed, startup_seconds)
    assert elapsed < 20


def test_connect_timeout_setting_bounds_the_wait(proxy: FaultProxy) -> None:
    """In-process (no interpreter start-up noise): the engine the CLI connects with carries
    DB_CONNECT_TIMEOUT, and a blackholed connect gives up after it."""
    proxy.set_mode("blackhole")
    settings = DatabaseSettings.from_env({"DATABASE_URL": _url(proxy.port), "DB_CONNECT_TIMEOUT": "2"})
    started = time.monotonic()
    with pytest.raises(OperationalError) as caught:
        db.current_revision(settings.url, settings.timeouts)
    assert 1.9 <= time.monotonic() - started < 4
    line = db.describe_failure(settings.url, caught.value)
    assert line == f"database test at 127.0.0.1:{proxy.port}: connection timeout expired"


@pytest.fixture
def locked_database() -> Iterator[str]:
    """A migrated database whose alembic_version table another session holds locked."""
    name, url = _new_postgres_database()
    try:
        db.upgrade(url)
        with psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname=name) as holder:
            holder.execute("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
            yield name
            holder.rollback()
    finally:
        _drop_postgres_database(name)


def test_a_lock_held_elsewhere_is_bounded_by_the_lock_timeout(locked_database: str) -> None:
    done, elapsed = _run(_url(5432, locked_database), "db", "current", DB_LOCK_TIMEOUT="1")
    _assert_one_clear_line(done, f"database {locked_database}", "lock timeout")
    assert elapsed < 15


def test_a_statement_that_never_answers_is_bounded_by_the_statement_timeout(locked_database: str) -> None:
    done, elapsed = _run(_url(5432, locked_database), "db", "current",
                         DB_LOCK_TIMEOUT="60", DB_STATEMENT_TIMEOUT="1")
    _assert_one_clear_line(done, f"database {locked_database}", "statement timeout")
    assert elapsed < 15


def test_check_reports_every_problem_of_every_part_in_one_run() -> None:
    done, _ = _run(_url(free_port()), "check", DB_CONNECT_TIMEOUT="soon", PROMETHEUS_URLS="ftp://x",
                   GATEWAY_RATE_LIMIT_BURST="0", SD_INTERVAL_SECONDS="never", AIVEN_SERVICE_PREFIX="x-",
                   BROKER_USERNAME="a:b", BROKER_PASSWORD="short")
    assert done.returncode == 1
    out = done.stdout
    for line in (
        "FAIL  broker: BROKER_USERNAME must not contain ':'",
        "FAIL  broker: BROKER_PASSWORD must be at least 16 characters",
        "FAIL  broker: DB_CONNECT_TIMEOUT must be a number",
        "FAIL  gateway: PROMETHEUS_URLS: not an http(s) URL",
        "FAIL  gateway: GATEWAY_RATE_LIMIT_BURST must be at least 1",
        "FAIL  sd: AIVEN_API_TOKEN is required",
        "FAIL  sd: AIVEN_SERVICE_PREFIX must not end with '-'",
        "FAIL  sd: SD_INTERVAL_SECONDS must be a number",
        "FAIL  database settings: DB_CONNECT_TIMEOUT must be a number",
    ):
        assert line in out, out
    assert "Traceback" not in out + done.stderr
    assert done.stderr.splitlines() == ["tenant-metrics: check failed: broker, gateway, sd, database settings"]


def test_upgrade_then_current_with_the_timeouts(empty_database_url: str) -> None:
    """The happy path with the timeouts applied: the migration runs and is reported."""
    upgraded, _ = _run(empty_database_url, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    head = db.head_revision()
    assert upgraded.stdout.strip().endswith(f"database at revision {head}")
    current, _ = _run(empty_database_url, "db", "current")
    assert (current.returncode, current.stdout.strip()) == (0, head)


def test_an_unopenable_sqlite_file_is_one_line_too(tmp_path: Path) -> None:
    done, _ = _run(f"sqlite:///{tmp_path}/no/such/dir/tm.sqlite3", "db", "current")
    _assert_one_clear_line(done, f"sqlite {tmp_path}/no/such/dir/tm.sqlite3", "unable to open database file")
