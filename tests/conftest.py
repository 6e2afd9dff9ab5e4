"""Fixtures shared by every part's tests: databases on SQLite and PostgreSQL, a clean environment."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tenant_metrics.core import db

POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _new_postgres_database() -> tuple[str, str]:
    name = "tm_" + uuid.uuid4().hex[:16]
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    return name, f"{base}/{name}"


def _drop_postgres_database(name: str) -> None:
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A brand-new, empty database of each kind; each test gets its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.sqlite3'}"
        return
    name, url = _new_postgres_database()
    try:
        yield url
    finally:
        _drop_postgres_database(name)


@pytest.fixture
def database_url(empty_database_url: str) -> str:
    """A migrated database (SQLite and PostgreSQL), isolated per test."""
    db.upgrade(empty_database_url)
    return empty_database_url


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's own settings."""
    for name in list(os.environ):
        if name.startswith(("AIVEN_", "CF_", "BROKER_", "GATEWAY_", "PROMETHEUS_", "SD_", "DB_", "METRICS_")) or name in (
            "DATABASE_URL",
            "VCAP_SERVICES",
            "VCAP_SERVICES_FILE_PATH",
            "VCAP_APPLICATION",
            "DATABASE_SERVICE_NAME",
            "PORT",
            "CREDENTIALS_KEY",
        ):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    """Debian's prometheus (installed by .ci/run). Missing it is a failure, never a skip."""
    path = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(path).exists():
        pytest.fail("prometheus binary not found: install Debian's 'prometheus' package (make deps)")
    return path
