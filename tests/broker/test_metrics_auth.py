"""The broker's /metrics behind the shared metrics credential (METRICS_*), not served on Cloud
Foundry without one, and the router's X-Vcap-Request-Id as the request id."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry

from broker.app import create_app
from broker.config import BrokerSettings, from_env
from tenant_metrics.core import db
from tenant_metrics.core.errors import ConfigError
from tenant_metrics.core.jsonlog import JsonFormatter
from tenant_metrics.world import serve_wsgi
from tests.broker.conftest import PASSWORD, USERNAME, broker_env

METRICS_USER = "prometheus"
METRICS_PASSWORD = "metrics-scrape-secret-7f3a"
ON_CF = {"VCAP_APPLICATION": json.dumps({"application_name": "tenant-metrics-broker", "instance_index": 0})}


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """About HTTP, not the database: SQLite only."""
    url = f"sqlite:///{tmp_path / 'broker.sqlite3'}"
    db.upgrade(url)
    return url


def _serve(settings: BrokerSettings) -> Iterator[str]:
    app = create_app(settings, registry=CollectorRegistry(), configure_logging=False)
    with serve_wsgi(app) as url:
        yield url
    app.extensions["tenant_metrics_broker"].store.engine.dispose()


@pytest.fixture
def protected(sqlite_url: str) -> Iterator[str]:
    env = broker_env(sqlite_url, METRICS_USERNAME=METRICS_USER, METRICS_PASSWORD=METRICS_PASSWORD, **ON_CF)
    yield from _serve(from_env(env))


def test_metrics_needs_the_metrics_credential(protected: str) -> None:
    none = requests.get(protected + "/metrics", timeout=10)
    assert none.status_code == 401
    assert none.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert none.json() == {"description": "missing or wrong credentials"}
    wrong = requests.get(protected + "/metrics", auth=(METRICS_USER, METRICS_PASSWORD + "x"), timeout=10)
    assert wrong.status_code == 401
    # The OSB account is Cloud Controller's, not Prometheus's: it does not open /metrics.
    assert requests.get(protected + "/metrics", auth=(USERNAME, PASSWORD), timeout=10).status_code == 401
    ok = requests.get(protected + "/metrics", auth=(METRICS_USER, METRICS_PASSWORD), timeout=10)
    assert ok.status_code == 200
    assert 'tenant_metrics_broker_requests_total{endpoint="metrics_endpoint",method="GET",status="401"}' in ok.text
    # /healthz stays open for the platform's health check.
    assert requests.get(protected + "/healthz", timeout=10).json() == {"status": "ok"}


def test_a_bearer_token_works_too(sqlite_url: str) -> None:
    token = "t0ken-for-prometheus-scrapes"
    for url in _serve(from_env(broker_env(sqlite_url, METRICS_BEARER_TOKEN=token))):
        assert requests.get(url + "/metrics", headers={"Authorization": "Bearer nope-nope-nope-nope"},
                            timeout=10).status_code == 401
        ok = requests.get(url + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert ok.status_code == 200 and "tenant_metrics_broker_requests_total" in ok.text


def test_on_cloud_foundry_without_a_credential_metrics_is_not_served(sqlite_url: str) -> None:
    settings = from_env(broker_env(sqlite_url, **ON_CF))
    assert not settings.metrics.served
    for url in _serve(settings):
        resp = requests.get(url + "/metrics", timeout=10)
        assert resp.status_code == 404 and resp.json() == {"description": "not found"}
        assert "tenant_metrics_broker" not in resp.text


def test_off_cloud_foundry_without_a_credential_metrics_stays_open(sqlite_url: str) -> None:
    for url in _serve(from_env(broker_env(sqlite_url))):
        resp = requests.get(url + "/metrics", timeout=10)
        assert resp.status_code == 200 and "tenant_metrics_broker_requests_total" in resp.text


def test_bad_metrics_settings_are_named(sqlite_url: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_env(broker_env(sqlite_url, METRICS_USERNAME="prometheus", METRICS_BEARER_TOKEN="short"))
    assert "METRICS_USERNAME and METRICS_PASSWORD go together" in str(err.value)
    assert "METRICS_BEARER_TOKEN must be at least 16 characters" in str(err.value)
    settings = from_env(broker_env(sqlite_url, METRICS_USERNAME=METRICS_USER, METRICS_PASSWORD=METRICS_PASSWORD))
    assert METRICS_PASSWORD not in repr(settings)


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("broker.app")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def _access_lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if '"status"' in line]


def test_the_routers_request_id_is_the_request_id(protected: str, log_output: io.StringIO) -> None:
    vcap = "5c9e8f0a-1b2c-4d3e-8f40-aa11bb22cc33"
    resp = requests.get(protected + "/v2/catalog", auth=(USERNAME, PASSWORD), timeout=10,
                        headers={"X-Broker-API-Version": "2.17", "X-Vcap-Request-Id": vcap})
    assert resp.status_code == 200
    assert resp.headers["X-Broker-API-Request-Identity"] == vcap
    line = _access_lines(log_output)[-1]
    assert line["request_id"] == vcap and line["endpoint"] == "catalog"
    assert "vcap_request_id" not in line


def test_osb_request_identity_wins_and_the_routers_id_is_logged_beside_it(
    protected: str, log_output: io.StringIO
) -> None:
    vcap = "0f0e0d0c-1b2c-4d3e-8f40-aa11bb22cc33"
    resp = requests.get(protected + "/v2/catalog", auth=(USERNAME, PASSWORD), timeout=10, headers={
        "X-Broker-API-Version": "2.17", "X-Vcap-Request-Id": vcap, "X-Broker-API-Request-Identity": "cc-req-1",
    })
    assert resp.headers["X-Broker-API-Request-Identity"] == "cc-req-1"
    line = _access_lines(log_output)[-1]
    assert line["request_id"] == "cc-req-1" and line["vcap_request_id"] == vcap
    # Neither header: a fresh id per request.
    first = requests.get(protected + "/v2/catalog", auth=(USERNAME, PASSWORD), timeout=10,
                         headers={"X-Broker-API-Version": "2.17"}).headers["X-Broker-API-Request-Identity"]
    second = requests.get(protected + "/v2/catalog", auth=(USERNAME, PASSWORD), timeout=10,
                          headers={"X-Broker-API-Version": "2.17"}).headers["X-Broker-API-Request-Identity"]
    assert first and second and first != second and vcap not in (first, second)
