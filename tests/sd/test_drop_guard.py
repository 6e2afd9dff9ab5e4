"""The mass-deletion guard in the loop: fake Aiven answering empty lists, real DB (SQLite and
PostgreSQL), the operator's confirmation through the CLI as a real process."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sd import dropconfirm
from tenant_metrics.core.db import make_engine, make_session_factory, session_scope
from tests.sd.conftest import Harness

ROOT = Path(__file__).resolve().parents[2]
TENANTS = 8  # more than the default SD_DROP_MIN_TARGETS (5)


def _sample(app: Any, name: str, labels: dict[str, str] | None = None) -> float | None:
    return app.registry.get_sample_value("tenant_metrics_sd_" + name, labels or {})


def _published(h: Harness, **env: str) -> tuple[Any, bytes]:
    for _ in range(TENANTS):
        h.tenant(integrated=True)
    app = h.app(**env)
    assert app.discovery.run_cycle().ok
    assert len(h.targets()) == TENANTS
    return app, h.targets_file.read_bytes()


def _confirm_drop(h: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenant_metrics", "sd", "confirm-drop", *args],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "HOME": str(h.tmp_path), "DATABASE_URL": h.database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_empty_lists_keep_the_targets_until_cycles_confirm_the_drop(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    app, good = _published(h, SD_DROP_CONFIRM_CYCLES="3")
    h.aiven.answer_empty_lists()

    first = app.discovery.run_cycle()  # the older check: an empty list is believed only twice
    assert not first.ok and first.failures[0].kind == "suspicious_empty"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sd.loop"):
        second = app.discovery.run_cycle()
    assert second.ok and second.withheld == TENANTS and not second.written
    assert h.targets_file.read_bytes() == good and app.state.get() == good
    withheld = [r for r in caplog.records if getattr(r, "event", "") == "sd_target_drop_withheld"]
    assert len(withheld) == 1
    assert withheld[0].dropped_target_groups == TENANTS and withheld[0].cycle == 1  # type: ignore[attr-defined]
    assert _sample(app, "target_drop_withheld") == TENANTS
    assert _sample(app, "target_drop_pending_cycles") == 1
    assert _sample(app, "target_groups") == TENANTS

    third = app.discovery.run_cycle()
    assert third.withheld == TENANTS and h.targets_file.read_bytes() == good
    assert _sample(app, "target_drop_pending_cycles") == 2
    assert _sample(app, "target_drops_withheld_total") == 2

    fourth = app.discovery.run_cycle()  # the third cycle in a row that proposes the drop
    assert fourth.ok and fourth.withheld == 0 and fourth.written
    assert h.targets() == [] and app.state.get() == b"[]\n"
    assert _sample(app, "target_drops_applied_total", {"confirmed_by": "cycles"}) == 1
    assert _sample(app, "target_drop_withheld") == 0
    assert _sample(app, "target_groups") == 0


def test_the_listing_coming_back_ends_the_withholding(harness: Harness) -> None:
    h = harness
    app, good = _published(h, SD_DROP_CONFIRM_CYCLES="3")
    h.aiven.answer_empty_lists(3)
    app.discovery.run_cycle()
    app.discovery.run_cycle()
    assert app.discovery.run_cycle().withheld == TENANTS
    back = app.discovery.run_cycle()  # Aiven answers right again: nothing was ever dropped
    assert back.ok and back.withheld == 0 and h.targets_file.read_bytes() == good
    assert _sample(app, "target_drop_pending_cycles") == 0
    assert _sample(app, "target_drops_applied_total", {"confirmed_by": "cycles"}) is None


def test_small_deletions_apply_at_once_and_large_partial_ones_are_withheld(
    harness: Harness,
) -> None:
    h = harness
    app, good = _published(h)
    names = sorted(h.aiven.services)
    for name in names[:2]:  # 2 of 8: ordinary
        h.aiven.delete_service(name)
    small = app.discovery.run_cycle()
    assert small.ok and small.withheld == 0 and small.written
    assert set(h.groups_by_service()) == set(names[2:])
    after_small = h.targets_file.read_bytes()

    for name in names[2:8]:  # all 6 left: more than SD_DROP_MIN_TARGETS and 100%
        h.aiven.delete_service(name)
    h.tenant(integrated=True)  # a new service in the same cycle changes nothing
    large = app.discovery.run_cycle()
    assert large.withheld == 6 and h.targets_file.read_bytes() == after_small != good


def test_operator_confirmation_applies_the_drop_in_every_instance(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    h.clock.utc = datetime.now(UTC)  # the CLI stamps its confirmation with the real time
    a, good = _published(h)
    other = h.tmp_path / "other" / "aiven.json"
    b = h.app(holder="sd-b", SD_TARGETS_FILE=str(other))
    assert b.discovery.run_cycle().ok and other.read_bytes() == good
    h.aiven.answer_empty_lists()
    for app in (a, b):
        app.discovery.run_cycle()
        assert app.discovery.run_cycle().withheld == TENANTS

    done = _confirm_drop(h, "--by", "alice")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)  # the whole of stdout is one JSON document
    assert out["confirmed_by"] == "alice" and out["valid_until"] > out["confirmed_at"]

    for app, path in ((a, h.targets_file), (b, other)):
        with caplog.at_level(logging.WARNING, logger="sd.loop"):
            report = app.discovery.run_cycle()
        applied = [r for r in caplog.records if getattr(r, "event", "") == "sd_target_drop_applied"]
        assert applied[-1].operator == "alice"  # type: ignore[attr-defined]
        assert report.ok and report.withheld == 0 and report.written
        assert json.loads(path.read_text()) == []
        assert _sample(app, "target_drops_applied_total", {"confirmed_by": "operator"}) == 1


def test_an_expired_confirmation_confirms_nothing(harness: Harness) -> None:
    h = harness
    h.clock.utc = datetime.now(UTC)
    app, good = _published(h)
    done = _confirm_drop(h, "--valid-for", "60")
    assert done.returncode == 0, done.stderr
    h.clock.advance(120)  # well past it, whatever the CLI took to start
    h.aiven.answer_empty_lists()
    app.discovery.run_cycle()
    assert app.discovery.run_cycle().withheld == TENANTS
    assert h.targets_file.read_bytes() == good


def test_a_restarted_process_guards_the_targets_it_finds_on_disk(harness: Harness) -> None:
    h = harness
    _, good = _published(h)
    h.aiven.answer_empty_lists()
    fresh = h.app(holder="sd-restarted")
    fresh.discovery.run_cycle()
    assert fresh.discovery.run_cycle().withheld == TENANTS
    assert h.targets_file.read_bytes() == good


def test_confirmation_rows_round_trip(database_url: str) -> None:
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    try:
        from datetime import timedelta

        with session_scope(sessions) as session:
            assert dropconfirm.valid_confirmation(session, now) is None
            dropconfirm.confirm(session, "bob", now, timedelta(minutes=10))
        with session_scope(sessions) as session:
            row = dropconfirm.valid_confirmation(session, now + timedelta(minutes=9))
            assert row is not None and row.confirmed_by == "bob" and row.confirmed_at == now
            assert dropconfirm.valid_confirmation(session, now + timedelta(minutes=10)) is None
    finally:
        engine.dispose()
