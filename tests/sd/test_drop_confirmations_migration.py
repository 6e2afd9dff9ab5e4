"""Migration 0002 (sd_drop_confirmations) up, down and up again on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect

from tenant_metrics.core import db


def _tables(url: str) -> set[str]:
    engine = db.make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _downgrade(url: str, revision: str) -> None:
    """On the caller's connection, as db.upgrade does it."""
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            cfg = db.alembic_config(url)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)
            conn.commit()
    finally:
        engine.dispose()


def test_0002_adds_and_removes_the_confirmations_table(empty_database_url: str) -> None:
    url = empty_database_url
    db.upgrade(url, "0001")
    assert "sd_drop_confirmations" not in _tables(url) and "leases" in _tables(url)
    db.upgrade(url)
    assert db.current_revision(url) == "0002"
    assert "sd_drop_confirmations" in _tables(url)
    _downgrade(url, "0001")
    assert db.current_revision(url) == "0001"
    assert "sd_drop_confirmations" not in _tables(url) and "leases" in _tables(url)
    db.upgrade(url)
    assert "sd_drop_confirmations" in _tables(url)
