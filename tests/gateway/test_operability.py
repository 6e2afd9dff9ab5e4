"""The gateway's operator endpoints: /readyz, /metrics behind the metrics credential, and
the router's X-Vcap-Request-Id as the request id."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
import requests
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.config import GatewaySettings, from_env
from tenant_metrics.core import db
from tenant_metrics.core.httpauth import Access, HttpCredentials
from tenant_metrics.world import TenantCreds, add_tenant, free_port, serve_app, serve_wsgi
from tests.gateway.support import RecordingUpstream

METRICS_USER, METRICS_PASSWORD = "prometheus", "a-metrics-password-1234"


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('gw-ops') / 'gw.sqlite3'}"
    db.upgrade(url)
    return url


@pytest.fixture(scope="module")
def tenant(sqlite_url: str) -> TenantCreds:
    return add_tenant(sqlite_url, "space", "org-1", "space-a")


@pytest.fixture(scope="module")
def upstream_url() -> Iterator[str]:
    with serve_wsgi(RecordingUpstream()) as url:
        yield url


def _serve(settings: GatewaySettings) -> Iterator[str]:
    with serve_app(create_app(settings, CollectorRegistry())) as url:
        yield url


@pytest.fixture
def guarded(upstream_url: str, sqlite_url: str) -> Iterator[str]:
    creds = HttpCredentials(username=METRICS_USER, password=METRICS_PASSWORD)
    yield from _serve(GatewaySettings(prometheus_urls=(upstream_url,), database_url=sqlite_url,
                                      metrics=Access(creds)))


def test_readyz_is_ready_when_a_prometheus_answers(guarded: str) -> None:
    resp = requests.get(guarded + "/readyz", timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"status": "ready", "prometheus_answering": 1, "prometheus_total": 1,
                           "credentials": "live"}


def test_readyz_is_503_when_no_prometheus_answers(sqlite_url: str) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    settings = replace(GatewaySettings(prometheus_urls=(nowhere,), database_url=sqlite_url),
                       upstream_probe_timeout_seconds=0.5)
    for url in _serve(settings):
        started = time.monotonic()
        resp = requests.get(url + "/readyz", timeout=10)
        assert resp.status_code == 503 and resp.json()["status"] == "unavailable"
        assert time.monotonic() - started < 5
        assert requests.get(url + "/healthz", timeout=10).status_code == 200  # alive, just not ready


def test_metrics_need_the_metrics_credential(guarded: str, tenant: TenantCreds) -> None:
    assert requests.get(guarded + "/metrics", timeout=10).status_code == 401
    assert requests.get(guarded + "/metrics", auth=tenant.auth, timeout=10).status_code == 401  # a tenant's key is not it
    assert requests.get(guarded + "/metrics", auth=(METRICS_USER, "wrong-password-12345678"), timeout=10).status_code == 401
    ok = requests.get(guarded + "/metrics", auth=(METRICS_USER, METRICS_PASSWORD), timeout=10)
    assert ok.status_code == 200 and "tenant_metrics_gateway_requests_total" in ok.text


def test_metrics_policy_from_the_environment() -> None:
    base = {"PROMETHEUS_URLS": "http://127.0.0.1:9090", "DATABASE_URL": "sqlite:///x.sqlite3"}
    assert from_env(base).metrics.mode == "open"  # off Cloud Foundry, no credential: as before
    on_cf = {**base, "VCAP_APPLICATION": '{"application_name": "gw"}',
             "DATABASE_URL": "postgresql+psycopg://u@h/d"}
    assert from_env(on_cf).metrics.mode == "off"  # through the router it would be public
    with_creds = {**on_cf, "METRICS_USERNAME": METRICS_USER, "METRICS_PASSWORD": METRICS_PASSWORD}
    assert from_env(with_creds).metrics.mode == "basic"


def test_metrics_are_not_served_on_cloud_foundry_without_a_credential(upstream_url: str, sqlite_url: str) -> None:
    for url in _serve(GatewaySettings(prometheus_urls=(upstream_url,), database_url=sqlite_url,
                                      metrics=Access(served=False))):
        resp = requests.get(url + "/metrics", timeout=10)
        assert resp.status_code == 404
        assert resp.json()["status"] == "error"


def test_the_routers_request_id_is_the_request_id(guarded: str, tenant: TenantCreds,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    vcap = "6d5f3b1e-0c8a-4e0f-9a55-3f1c2a7b9e10"
    requests.get(guarded + "/api/v1/labels", auth=tenant.auth, timeout=10,
                 headers={"X-Vcap-Request-Id": vcap, "X-Request-Id": "client-chosen"})
    requests.get(guarded + "/api/v1/labels", auth=tenant.auth, timeout=10,
                 headers={"X-Vcap-Request-Id": '"}{"x', "X-Request-Id": "client-chosen"})
    deadline = time.monotonic() + 5
    ids: list[str | None] = []
    while time.monotonic() < deadline:
        ids = [getattr(r, "request_id", None) for r in caplog.records if r.getMessage() == "request"]
        if len(ids) >= 2:
            break
        time.sleep(0.02)
    assert ids[-2:] == [vcap, "client-chosen"]  # a malformed router id falls back to the client's
