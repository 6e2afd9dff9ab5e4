"""Rows become records in one place: a Core row and an ORM model give the same record,
and a saved record reads back unchanged (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sd import store
from tenant_metrics.core.db import make_engine, make_session_factory, session_scope

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _same_instant(a: datetime, b: datetime) -> bool:
    # SQLite hands back naive UTC datetimes, PostgreSQL aware ones.
    return a.replace(tzinfo=a.tzinfo or UTC) == b.replace(tzinfo=b.tzinfo or UTC)


def test_owner_records_round_trip(database_url: str) -> None:
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    saved = [
        store.OwnerRow("g-1", "orders", "s-1", "prod", "o-1", "dept", False, NOW),
        store.OwnerRow("g-2", None, None, None, None, None, True, NOW - timedelta(hours=1)),
    ]
    try:
        with session_scope(sessions, write=True) as session:
            store.save_owners(session, saved, NOW)
        with session_scope(sessions) as session:
            by_columns = store.load_owners(session)
            by_model = {r.instance_guid: store.load_one(session, r.instance_guid) for r in saved}
            partial = store.load_owners_for(session, ["g-2", "unknown"])
    finally:
        engine.dispose()
    assert set(by_columns) == {"g-1", "g-2"} and set(partial) == {"g-2"}
    for record in saved:
        for loaded in (by_columns[record.instance_guid], by_model[record.instance_guid]):
            assert loaded is not None
            assert loaded.to_values() | {"refreshed_at": None} == record.to_values() | {"refreshed_at": None}
            assert _same_instant(loaded.refreshed_at, record.refreshed_at)
            assert type(loaded.missing) is bool


def test_attempt_records_match_what_was_recorded(database_url: str) -> None:
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    try:
        with session_scope(sessions, write=True) as session:
            store.record_attempt(session, "svc-a", NOW, succeeded=False, error="boom", backoff=timedelta(minutes=1))
            returned = store.record_attempt(session, "svc-a", NOW, succeeded=False, error="again",
                                            backoff=timedelta(minutes=2))
        with session_scope(sessions) as session:
            loaded = store.load_attempts(session, ["svc-a", "svc-b"])
    finally:
        engine.dispose()
    assert set(loaded) == {"svc-a"}
    got = loaded["svc-a"]
    assert (returned.service, returned.attempts, returned.last_error, returned.succeeded) == ("svc-a", 2, "again", False)
    assert (got.service, got.attempts, got.last_error, got.succeeded) == ("svc-a", 2, "again", False)
    assert _same_instant(got.next_attempt_at, NOW + timedelta(minutes=2))
    assert _same_instant(returned.last_attempt_at, got.last_attempt_at)
