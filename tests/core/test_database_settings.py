"""DatabaseSettings: DATABASE_URL and the DB_* timeouts, read once, every bad one named;
and each part's settings report every problem at once (what `check` prints)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from broker.config import from_env as broker_from_env
from gateway.config import from_env as gateway_from_env
from sd.config import OwnerLookupSettings, SdSettings
from tenant_metrics.core import db
from tenant_metrics.core.config import DatabaseSettings
from tenant_metrics.core.errors import ConfigError
from tests.conftest import POSTGRES_ADMIN_URL

PG = "postgresql+psycopg://postgres:pw@127.0.0.1:5432/test"


def test_defaults() -> None:
    s = DatabaseSettings.from_env({"DATABASE_URL": PG})
    assert (s.url, s.timeouts.connect_timeout, s.timeouts.statement_timeout,
            s.timeouts.migration_statement_timeout) == (PG, 5.0, 5.0, 300.0)
    assert (s.timeouts.lock_timeout, s.timeouts.pool_timeout) == (3.0, 3.0)
    assert (s.timeouts.keepalives_idle, s.timeouts.keepalives_interval, s.timeouts.keepalives_count) == (10, 5, 3)
    assert "pw" not in repr(s)


def test_every_bad_setting_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        DatabaseSettings.from_env({"DATABASE_URL": PG, "DB_CONNECT_TIMEOUT": "soon", "DB_LOCK_TIMEOUT": "0",
                                   "DB_KEEPALIVES_COUNT": "0", "DB_POOL_TIMEOUT": "nan"})
    assert [p.split()[0] for p in caught.value.problems] == [
        "DB_CONNECT_TIMEOUT", "DB_LOCK_TIMEOUT", "DB_POOL_TIMEOUT", "DB_KEEPALIVES_COUNT"]


def test_settings_become_the_engines_timeouts() -> None:
    s = DatabaseSettings.from_env({"DATABASE_URL": PG, "DB_CONNECT_TIMEOUT": "0.2", "DB_STATEMENT_TIMEOUT": "2.5",
                                   "DB_KEEPALIVES_IDLE": "7"})
    params = s.timeouts.postgres_connect_args()
    assert params["connect_timeout"] == 2  # libpq: whole seconds, and less than 2 counts as 2
    assert "-c statement_timeout=2500 -c lock_timeout=3000" in params["options"]
    assert (params["keepalives"], params["keepalives_idle"]) == (1, 7)
    migration = s.timeouts.for_migrations().postgres_connect_args()["options"]
    assert "-c statement_timeout=300000 -c lock_timeout=300000" in migration


def test_the_timeouts_reach_a_real_postgresql_session() -> None:
    base = DatabaseSettings.from_env({"DATABASE_URL": POSTGRES_ADMIN_URL, "DB_STATEMENT_TIMEOUT": "4",
                                      "DB_LOCK_TIMEOUT": "2", "DB_MIGRATION_STATEMENT_TIMEOUT": "120"})
    for timeouts, expected in ((base.timeouts, ("4s", "2s")), (base.timeouts.for_migrations(), ("2min", "2min"))):
        engine = db.make_engine(base.url, timeouts)
        try:
            with engine.connect() as conn:
                shown = (conn.execute(text("SHOW statement_timeout")).scalar(),
                         conn.execute(text("SHOW lock_timeout")).scalar())
        finally:
            engine.dispose()
        assert shown == expected


def test_each_part_names_every_problem_at_once() -> None:
    env = {"DATABASE_URL": PG, "DB_STATEMENT_TIMEOUT": "x"}
    with pytest.raises(ConfigError) as gateway:
        gateway_from_env({**env, "PROMETHEUS_URLS": "ftp://a", "GATEWAY_AUTH_CACHE_SECONDS": "5",
                          "GATEWAY_MAX_POINTS": "1"})
    assert [p.split()[0].rstrip(":") for p in gateway.value.problems] == [
        "GATEWAY_AUTH_CACHE_SECONDS", "DB_STATEMENT_TIMEOUT", "PROMETHEUS_URLS", "GATEWAY_MAX_POINTS"]
    with pytest.raises(ConfigError) as sd:
        SdSettings.from_env({**env, "CF_API_URL": "http://cc", "SD_SCRAPE_PORT": "70000"})
    assert [p.split()[0] for p in sd.value.problems] == [
        "CF_CLIENT_ID", "CF_CLIENT_SECRET", "AIVEN_SERVICE_PREFIX", "DB_STATEMENT_TIMEOUT", "AIVEN_API_TOKEN",
        "AIVEN_PROJECT", "AIVEN_PROMETHEUS_ENDPOINT_ID", "SD_SCRAPE_PORT"]
    with pytest.raises(ConfigError) as broker:
        broker_from_env({**env, "BROKER_USERNAME": "a:b", "GATEWAY_PUBLIC_URL": "nope"})
    assert [p.split()[0] for p in broker.value.problems] == [
        "BROKER_USERNAME", "BROKER_PASSWORD", "GATEWAY_PUBLIC_URL", "DB_STATEMENT_TIMEOUT"]
    assert str(broker.value) == "; ".join(broker.value.problems)  # str() still reads as one message


def test_parts_carry_the_database_settings_they_read() -> None:
    env = {"DATABASE_URL": PG, "DB_CONNECT_TIMEOUT": "2", "PROMETHEUS_URLS": "http://p:9090",
           "AIVEN_SERVICE_PREFIX": "cf", "AIVEN_API_TOKEN": "t", "AIVEN_PROJECT": "p",
           "AIVEN_PROMETHEUS_ENDPOINT_ID": "e", "BROKER_USERNAME": "broker",
           "BROKER_PASSWORD": "a-long-and-varied-password"}
    expected = DatabaseSettings.from_env(env)
    assert expected.timeouts.connect_timeout == 2.0
    gateway, sd, broker = gateway_from_env(env), SdSettings.from_env(env), broker_from_env(env)
    assert gateway.database == sd.database == broker.database == expected
    assert gateway.database_url == sd.database_url == broker.database_url == PG
    assert OwnerLookupSettings.from_env(env) == OwnerLookupSettings("cf", expected)
