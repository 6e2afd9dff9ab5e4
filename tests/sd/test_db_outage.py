"""The database away: sd says so, keeps the last good targets, and recovers with no restart."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tenant_metrics.core import db
from tenant_metrics.fakes.aiven import FakeAiven
from tenant_metrics.fakes.cloudcontroller import FakeCloudController
from tests.conftest import POSTGRES_ADMIN_URL
from tests.sd.conftest import Harness


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_database_outage_then_recovery(
    kind: str, tmp_path: Path, fake_aiven: FakeAiven, fake_cc: FakeCloudController
) -> None:
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'not-yet' / 'sd.sqlite3'}"  # the directory does not exist
    else:
        name = "tm_sd_" + uuid.uuid4().hex[:12]
        url = f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"  # the database does not exist
    h = Harness(url, fake_aiven, fake_cc, tmp_path)
    try:
        t = h.tenant(integrated=True)
        app = h.app()

        down = app.discovery.run_cycle()

        assert not down.ok
        assert [(f.stage, f.kind) for f in down.failures] == [("owners", "database")]
        assert (
            "database error" in down.failures[0].message
            and "postgres@" not in down.failures[0].message
        )
        assert not h.targets_file.exists() and app.state.get() is None  # nothing half-made
        assert (
            app.registry.get_sample_value(
                "tenant_metrics_sd_failures_total", {"stage": "owners", "kind": "database"}
            )
            == 1
        )

        if kind == "sqlite":
            (tmp_path / "not-yet").mkdir()
        else:
            admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            admin.dispose()
        db.upgrade(url)

        back = app.discovery.run_cycle()  # the same process, no restart
        assert back.ok, back.failures
        assert t.aiven_name in h.groups_by_service()
    finally:
        h.close()
        if kind == "postgresql":
            admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
