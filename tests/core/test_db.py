from __future__ import annotations

from sqlalchemy import inspect

from tenant_metrics.core import db


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
