"""`tenant-metrics sd confirm-drop` as a real process: what it writes, and its errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sd import dropconfirm
from tenant_metrics.core.db import make_engine, make_session_factory, session_scope

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenant_metrics", "sd", "confirm-drop", *args],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_confirm_drop_records_who_and_until_when(database_url: str, tmp_path: Path) -> None:
    before = datetime.now(UTC)
    done = _run(tmp_path, "--valid-for", "300", DATABASE_URL=database_url)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["confirmed_by"].endswith("@" + socket.gethostname())
    engine = make_engine(database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            row = dropconfirm.valid_confirmation(session, before + timedelta(seconds=290))
            assert row is not None and row.confirmed_by == out["confirmed_by"]
            assert row.expires_at.isoformat() == out["valid_until"]
            assert dropconfirm.valid_confirmation(session, before + timedelta(seconds=400)) is None
    finally:
        engine.dispose()


@pytest.mark.parametrize("valid_for", ["0", "-5", "100000"])
def test_confirm_drop_rejects_a_nonsense_validity(
    database_url: str, tmp_path: Path, valid_for: str
) -> None:
    done = _run(tmp_path, f"--valid-for={valid_for}", DATABASE_URL=database_url)
    assert done.returncode == 2
    assert "--valid-for" in done.stderr and "Traceback" not in done.stderr


def test_confirm_drop_without_a_database_says_so(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql+psycopg://postgres:db-secret@127.0.0.1:{port}/nope"
    done = _run(tmp_path, DATABASE_URL=url, DB_CONNECT_TIMEOUT="2", DB_STATEMENT_TIMEOUT="2")
    assert done.returncode == 1
    assert "database error" in done.stderr and "nothing confirmed" in done.stderr
    assert "Traceback" not in done.stderr and "db-secret" not in done.stdout + done.stderr
