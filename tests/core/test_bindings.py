"""Finding the database among Cloud Foundry bindings, in the shapes real brokers write."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tenant_metrics.core.config import database_url
from tenant_metrics.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
ON_CF = {"VCAP_APPLICATION": json.dumps({"application_name": "tenant-metrics-broker", "instance_index": 0})}
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBfakefakefake\n-----END CERTIFICATE-----"


def _binding(credentials: dict[str, Any], *, label: str = "postgres", name: str = "tenant-metrics-db",
             binding_name: str | None = None, tags: list[str] | None = None) -> dict[str, Any]:
    return {"label": label, "name": name, "instance_name": name, "binding_name": binding_name,
            "tags": ["postgres", "relational"] if tags is None else tags, "plan": "small",
            "credentials": credentials}


def _env(*bindings: dict[str, Any], **extra: str) -> dict[str, str]:
    vcap: dict[str, list[dict[str, Any]]] = {}
    for b in bindings:
        vcap.setdefault(b["label"], []).append(b)
    return {**ON_CF, "VCAP_SERVICES": json.dumps(vcap), **extra}


# The shapes: (id, binding, expected url parts)
SHAPES = [
    ("paas-rds-broker uri", _binding({
        "host": "rds.example", "port": 5432, "name": "db1", "username": "u1", "password": "p@ss/1",
        "uri": "postgres://u1:p%40ss%2F1@rds.example:5432/db1",
        "jdbcuri": "jdbc:postgresql://rds.example:5432/db1?password=p%40ss%2F1&ssl=true&user=u1"}),
     {"host": "rds.example", "port": 5432, "database": "db1", "username": "u1", "password": "p@ss/1"}),
    ("cloud-service-broker jdbcUrl only", _binding({
        "hostname": "csb.example", "jdbcUrl": "jdbc:postgresql://csb.example:5433/csbdb?user=cu&password=cp&ssl=true&sslfactory=org.postgresql.ssl.NonValidatingFactory"},
        label="csb-aws-postgresql", tags=["postgres", "postgresql"]),
     {"host": "csb.example", "port": 5433, "database": "csbdb", "username": "cu", "password": "cp",
      "query": {"sslmode": "require"}}),
    ("discrete fields", _binding({"hostname": "pg.example", "port": "6432", "db_name": "d", "user": "du",
                                  "password": "dp"}, label="a9s-postgresql11", tags=["sql"]),
     {"host": "pg.example", "port": 6432, "database": "d", "username": "du", "password": "dp"}),
    ("user-provided url", _binding({"url": "postgresql://ups:secret@ups.example/upsdb?sslmode=verify-full"},
                                   label="user-provided", tags=[]),
     {"host": "ups.example", "port": None, "database": "upsdb", "username": "ups", "password": "secret",
      "query": {"sslmode": "verify-full"}}),
    ("discrete with require_ssl", _binding({"host": "h.example", "port": 5432, "database": "x", "username": "a",
                                            "password": "b", "require_ssl": True}),
     {"host": "h.example", "database": "x", "query": {"sslmode": "require"}}),
]


@pytest.mark.parametrize(("binding", "expected"), [(b, e) for _, b, e in SHAPES], ids=[s[0] for s in SHAPES])
def test_each_binding_shape(binding: dict[str, Any], expected: dict[str, Any]) -> None:
    url = make_url(database_url(_env(binding)))
    assert url.drivername == "postgresql+psycopg"
    for key, value in expected.items():
        if key == "query":
            assert dict(url.query) == value
        else:
            assert getattr(url, key) == value, key


def test_no_binding_on_cloud_foundry_is_an_error_never_sqlite() -> None:
    with pytest.raises(ConfigError, match="no PostgreSQL service is bound"):
        database_url(ON_CF)
    with pytest.raises(ConfigError, match="no PostgreSQL service is bound"):
        database_url(_env(_binding({"uri": "mysql://a:b@h/d"}, label="user-provided", tags=[])))


def test_off_cloud_foundry_sqlite_stays_the_default(tmp_path: Path) -> None:
    assert database_url({}, cwd=str(tmp_path)).startswith("sqlite:///")


def test_two_bindings_need_a_name() -> None:
    one = _binding({"uri": "postgres://a:b@one.example/d1"}, name="metrics-db", binding_name="primary")
    two = _binding({"uri": "postgres://a:b@two.example/d2"}, name="other-db")
    with pytest.raises(ConfigError, match="2 PostgreSQL bindings.*DATABASE_SERVICE_NAME"):
        database_url(_env(one, two))
    assert make_url(database_url(_env(one, two, DATABASE_SERVICE_NAME="other-db"))).host == "two.example"
    assert make_url(database_url(_env(one, two, DATABASE_SERVICE_NAME="primary"))).host == "one.example"
    with pytest.raises(ConfigError, match="matches no PostgreSQL binding"):
        database_url(_env(one, two, DATABASE_SERVICE_NAME="typo-db"))


def test_database_url_still_wins_on_cloud_foundry() -> None:
    assert database_url({**ON_CF, "DATABASE_URL": "postgres://x@y/z"}) == "postgresql+psycopg://x@y/z"


def test_ca_as_pem_text_goes_to_a_private_file() -> None:
    url = make_url(database_url(_env(_binding({"uri": "postgres://a:b@h.example/d", "sslrootcert": CA_PEM}))))
    path = Path(url.query["sslrootcert"])
    assert url.query["sslmode"] == "verify-ca"
    assert path.read_text().strip() == CA_PEM
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_ca_as_a_path_and_explicit_sslmode_are_kept() -> None:
    url = make_url(database_url(_env(_binding({"uri": "postgres://a:b@h.example/d", "sslmode": "verify-full",
                                               "sslrootcert": "/etc/ssl/certs/rds.pem"}))))
    assert dict(url.query) == {"sslmode": "verify-full", "sslrootcert": "/etc/ssl/certs/rds.pem"}


def test_bad_sslmode_and_missing_host_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="sslmode"):
        database_url(_env(_binding({"uri": "postgres://a@h/d", "sslmode": "sometimes"})))
    with pytest.raises(ConfigError, match="no host or database"):
        database_url(_env(_binding({"username": "a", "password": "b"})))


# -- against the real PostgreSQL, through each shape ---------------------------------------

REAL = [
    ("uri", {"uri": "postgres://postgres:ignored@127.0.0.1:5432/test?sslmode=disable"}),
    ("jdbcUrl", {"jdbcUrl": "jdbc:postgresql://127.0.0.1:5432/test?user=postgres&password=x"}),
    ("jdbcuri", {"jdbcuri": "jdbc:postgresql://127.0.0.1:5432/test?user=postgres&password=x"}),
    ("discrete", {"host": "127.0.0.1", "port": 5432, "name": "test", "username": "postgres", "password": "x"}),
    ("hostname/database/user", {"hostname": "127.0.0.1", "port": "5432", "database": "test", "user": "postgres"}),
    ("url + CA text, prefer", {"url": "postgresql://postgres@127.0.0.1:5432/test", "sslmode": "prefer",
                               "ca_certificate": CA_PEM}),
]


@pytest.mark.parametrize("credentials", [c for _, c in REAL], ids=[n for n, _ in REAL])
def test_each_shape_reaches_the_real_postgresql(credentials: dict[str, Any]) -> None:
    url = database_url(_env(_binding(credentials)))
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_database()")).scalar() == "test"
    finally:
        engine.dispose()


def test_cli_on_cloud_foundry_without_a_database_fails_in_one_line(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], **ON_CF, "VCAP_SERVICES": "{}"}
    result = subprocess.run([sys.executable, "-m", "tenant_metrics", "db", "upgrade"], cwd=tmp_path, env={
        **env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no PostgreSQL service is bound" in lines[0], result.stderr
    assert not list(tmp_path.glob("*.sqlite3"))
