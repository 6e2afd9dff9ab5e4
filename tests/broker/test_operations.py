"""Operations: JSON logs without secrets, metrics by endpoint and status, 503 on a database outage and recovery."""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine, text

from broker.app import create_app
from broker.config import BrokerSettings, from_env
from tenant_metrics.core import db
from tenant_metrics.world import serve_wsgi
from tests.broker.conftest import PASSWORD, USERNAME, Osb, broker_env
from tests.conftest import POSTGRES_ADMIN_URL


def test_logs_are_json_with_request_id_and_no_secrets(osb: Osb, log_output: io.StringIO) -> None:
    osb.provision("inst-1", headers=osb.headers(**{"X-Broker-API-Request-Identity": "req-42"}))
    issued = osb.bind("inst-1", "bind-1").json()["credentials"]
    osb.bind("inst-1", "bind-1")  # a repeat derives the password again
    osb.request("GET", "/v2/catalog", headers=osb.headers(Authorization="Basic bm9wZTpub3Bl"))
    requests.get(osb.base + "/v2/catalog", auth=(USERNAME, PASSWORD + "-wrong"), timeout=10)
    osb.provision("inst-2", osb.provision_body(parameters={"password": "hunter2-secret"}))
    text_out = log_output.getvalue()
    basic = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    for secret in (PASSWORD, basic, issued["password"], issued["uri"], "hunter2-secret"):
        assert secret not in text_out
    assert "Authorization" not in text_out and "authorization" not in text_out.lower().replace("unauthorized", "")
    lines = [json.loads(line) for line in text_out.splitlines() if line.strip()]
    access = [e for e in lines if e["logger"] == "broker.app"]
    assert any(e.get("request_id") == "req-42" and e["status"] == 201 and e["endpoint"] == "provision" for e in access)
    assert {e["status"] for e in access} >= {200, 201, 401, 400}


def test_metrics_count_requests_by_endpoint_and_status(osb: Osb, registry: CollectorRegistry) -> None:
    osb.provision("inst-1")
    osb.provision("inst-1")
    osb.request("GET", "/v2/service_instances/nope")
    requests.get(osb.base + "/v2/catalog", timeout=10)

    def count(endpoint: str, method: str, status: str) -> float | None:
        return registry.get_sample_value(
            "tenant_metrics_broker_requests_total", {"endpoint": endpoint, "method": method, "status": status})

    assert count("provision", "PUT", "201") == 1
    assert count("provision", "PUT", "200") == 1
    assert count("get_instance", "GET", "404") == 1
    assert count("catalog", "GET", "401") == 1
    assert registry.get_sample_value("tenant_metrics_broker_request_duration_seconds_count", {"endpoint": "provision"}) == 2
    exposed = requests.get(osb.base + "/metrics", timeout=10).text
    assert 'tenant_metrics_broker_requests_total{endpoint="provision",method="PUT",status="201"} 1.0' in exposed


@pytest.fixture(params=["sqlite", "postgresql"])
def missing_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, object]]:
    """A database URL that does not work yet, and a function that brings it into being."""
    if request.param == "sqlite":
        folder = tmp_path / "not-yet"
        url = f"sqlite:///{folder / 'broker.sqlite3'}"

        def create() -> None:
            folder.mkdir()
            db.upgrade(url)

        yield url, create
        return
    name = "tm_outage_" + uuid.uuid4().hex[:12]
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")

    def create_pg() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        db.upgrade(url)

    try:
        yield url, create_pg
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_database_outage_is_503_and_recovers_without_restart(missing_database: tuple[str, object]) -> None:
    url, create = missing_database
    settings: BrokerSettings = from_env(broker_env(url))
    app = create_app(settings, registry=CollectorRegistry(), configure_logging=False)
    with serve_wsgi(app) as base:
        osb = Osb(base, settings)
        assert requests.get(base + "/healthz", timeout=10).status_code == 200  # cheap: no DB
        ready = requests.get(base + "/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["description"] == "database unavailable"
        for response in (
            osb.provision("inst-1"),
            osb.request("GET", "/v2/service_instances/inst-1"),
            osb.bind("inst-1", "bind-1"),
            osb.deprovision("inst-1"),
        ):
            assert response.status_code == 503, response.text
            assert "database unavailable" in response.json()["description"]
            assert "Traceback" not in response.text
        assert osb.request("GET", "/v2/catalog").status_code == 200  # the catalog needs no DB
        create()  # type: ignore[operator]
        assert requests.get(base + "/readyz", timeout=10).status_code == 200
        assert osb.provision("inst-1").status_code == 201
        osb.session.close()
    app.extensions["tenant_metrics_broker"].store.engine.dispose()


def test_dead_pooled_connections_are_replaced_without_an_error() -> None:
    """PostgreSQL restarted or failed over: pooled connections are dead, yet the next
    requests succeed (the store reconnects once instead of pinging before every use)."""
    name = "tm_reconnect_" + uuid.uuid4().hex[:12]
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        db.upgrade(url)
        settings = from_env(broker_env(url))
        app = create_app(settings, registry=CollectorRegistry(), configure_logging=False)
        with serve_wsgi(app) as base:
            osb = Osb(base, settings)
            assert osb.provision("inst-1").status_code == 201
            with admin.connect() as conn:
                killed = conn.execute(text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name}).scalar()
            assert killed and killed >= 1
            assert osb.request("GET", "/v2/service_instances/inst-1").status_code == 200
            assert osb.bind("inst-1", "bind-1").status_code == 201
            osb.session.close()
        app.extensions["tenant_metrics_broker"].store.engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
