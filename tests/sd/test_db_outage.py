"""The database away: sd says so, keeps the last good targets, and recovers with no restart."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tenant_metrics.core import db
from tenant_metrics.fakes.aiven import FakeAiven
from tenant_metrics.fakes.cloudcontroller import FakeCloudController
from tenant_metrics.fakes.tcpproxy import FaultProxy
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


def test_blackholed_database_costs_a_bounded_wait_and_keeps_the_targets(
    fake_aiven: FakeAiven, fake_cc: FakeCloudController, tmp_path: Path
) -> None:
    """PostgreSQL behind a proxy that stops answering (a partition): no cycle hangs."""
    name = "tm_sd_" + uuid.uuid4().hex[:12]
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    direct = f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    db.upgrade(direct)
    with FaultProxy("127.0.0.1", 5432) as proxy:
        url = direct.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        assert url != direct
        h = Harness(url, fake_aiven, fake_cc, tmp_path)
        try:
            t = h.tenant(integrated=True)
            app = h.app(DB_CONNECT_TIMEOUT="2", DB_STATEMENT_TIMEOUT="2")
            assert app.discovery.run_cycle().ok
            good = h.targets_file.read_bytes()
            h.tenant(integrated=True)  # a change that must not half-appear

            proxy.set_mode("blackhole")
            started = time.monotonic()
            result: list[Any] = []
            worker = threading.Thread(target=lambda: result.append(app.discovery.run_cycle()))
            worker.daemon = True  # if sd hangs, the test fails rather than hanging with it
            worker.start()
            worker.join(timeout=30)
            took = time.monotonic() - started
            assert result, "the cycle hung on the blackholed database"
            down = result[0]

            assert not down.ok
            assert {(f.stage, f.kind) for f in down.failures} <= {
                ("integrate", "database"),
                ("owners", "database"),
            }
            assert ("owners", "database") in {(f.stage, f.kind) for f in down.failures}
            assert took < 15, took  # two DB calls, each bounded by the 2 s connect timeout
            assert h.targets_file.read_bytes() == good and app.state.get() == good

            proxy.set_mode("pass")  # new connections flow again; old ones stay dead
            back = app.discovery.run_cycle()
            assert back.ok, back.failures
            assert t.aiven_name in h.groups_by_service() and len(h.targets()) == 2
        finally:
            h.close()
            admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
