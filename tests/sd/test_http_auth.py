"""sd's HTTP server behind credentials: /targets (http_sd) and /metrics need them, /healthz
stays open and tells nothing sensitive; on Cloud Foundry they are required and sd listens on
0.0.0.0:$PORT. Real HTTP on loopback; the settings through SdSettings.from_env."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry

from sd.config import SdSettings
from sd.server import SdHttpServer, staleness_health
from sd.writer import TargetsState
from tenant_metrics.core.errors import ConfigError
from tenant_metrics.core.httpauth import Access, HttpCredentials, credentials_from_env
from tenant_metrics.world import part_env

ROOT = Path(__file__).resolve().parents[2]
USER = "prometheus"
PASSWORD = "sd-http-secret-0123456789"
TOKEN = "sd-bearer-token-abcdefghij"
METRICS_PASSWORD = "metrics-secret-0123456789"
TARGETS = json.dumps([{"targets": ["10.0.0.1:9273"], "labels": {"cf_organization_guid": "org-1"}}]).encode()
BASE_ENV = {
    "AIVEN_API_TOKEN": "aiven-token",
    "AIVEN_PROJECT": "tm",
    "AIVEN_PROMETHEUS_ENDPOINT_ID": "endpoint",
    "AIVEN_SERVICE_PREFIX": "prod-es",
    "DATABASE_URL": "sqlite://",
}
ON_CF = {"VCAP_APPLICATION": json.dumps({"application_name": "tenant-metrics-sd", "instance_index": 1})}


def _server(targets: Access, metrics: Access, healthy: bool = True) -> SdHttpServer:
    state = TargetsState()
    state.set(TARGETS)
    clock = [1000.0 if healthy else 10_000.0]
    health = staleness_health(lambda: 900.0, 0.0, 300.0, lambda: clock[0])
    return SdHttpServer("127.0.0.1", 0, CollectorRegistry(), state, health,
                        targets_access=targets, metrics_access=metrics).start()


@pytest.fixture
def server() -> Iterator[str]:
    creds = HttpCredentials(USER, PASSWORD, TOKEN, "tenant-metrics-sd")
    metrics = HttpCredentials("metrics", METRICS_PASSWORD)
    srv = _server(Access(creds), Access(metrics))
    try:
        yield srv.url
    finally:
        srv.stop()


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize("headers", [
    {},
    _basic(USER, PASSWORD + "x"),
    _basic(USER + "x", PASSWORD),
    _basic(USER, ""),
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Bearer {PASSWORD}"},
    {"Authorization": f"Basic {TOKEN}"},  # the token where a basic pair belongs
    {"Authorization": "Basic !!!not-base64!!!"},
    {"Authorization": f"Token {TOKEN}"},
    {"Authorization": f"{TOKEN}"},
], ids=["none", "wrong-password", "wrong-user", "empty-password", "wrong-token", "password-as-token",
        "token-as-basic", "bad-base64", "unknown-scheme", "no-scheme"])
def test_targets_refuse_a_missing_or_wrong_credential(server: str, headers: dict[str, str]) -> None:
    resp = requests.get(server + "/targets", headers=headers, timeout=5)
    assert resp.status_code == 401
    assert resp.json() == {"status": "error", "error": "missing or wrong credentials"}
    challenges = resp.raw.headers.getlist("WWW-Authenticate")
    assert challenges == ['Basic realm="tenant-metrics-sd", charset="UTF-8"', 'Bearer realm="tenant-metrics-sd"']
    assert b"10.0.0.1" not in resp.content and PASSWORD not in resp.text and TOKEN not in resp.text


def test_targets_with_basic_or_bearer(server: str) -> None:
    basic = requests.get(server + "/targets", auth=(USER, PASSWORD), timeout=5)
    assert basic.status_code == 200 and basic.content == TARGETS
    bearer = requests.get(server + "/targets", headers={"Authorization": f"bearer {TOKEN}"}, timeout=5)
    assert bearer.status_code == 200 and bearer.content == TARGETS


def test_metrics_takes_the_metrics_credential_and_counts_refusals(server: str) -> None:
    assert requests.get(server + "/targets", timeout=5).status_code == 401
    assert requests.get(server + "/metrics", timeout=5).status_code == 401
    # The http_sd credential is not the metrics one here (METRICS_* set).
    assert requests.get(server + "/metrics", auth=(USER, PASSWORD), timeout=5).status_code == 401
    ok = requests.get(server + "/metrics", auth=("metrics", METRICS_PASSWORD), timeout=5)
    assert ok.status_code == 200
    assert 'tenant_metrics_sd_http_requests_total{code="401",path="/targets"} 1.0' in ok.text
    assert 'tenant_metrics_sd_http_requests_total{code="401",path="/metrics"} 2.0' in ok.text


def test_healthz_is_open_and_tells_nothing_sensitive() -> None:
    creds = HttpCredentials(USER, PASSWORD)
    for healthy, status in ((True, 200), (False, 503)):
        srv = _server(Access(creds), Access(creds), healthy=healthy)
        try:
            resp = requests.get(srv.url + "/healthz", timeout=5)
        finally:
            srv.stop()
        assert resp.status_code == status
        body = resp.json()
        assert set(body) == {"status", "last_success", "max_age_seconds"}
        assert body["status"] == ("ok" if healthy else "unhealthy")
        assert b"10.0.0.1" not in resp.content and b"org-1" not in resp.content


def test_metrics_not_served_answers_404() -> None:
    srv = _server(Access(), Access(served=False))
    try:
        assert requests.get(srv.url + "/metrics", timeout=5).status_code == 404
        assert requests.get(srv.url + "/targets", timeout=5).status_code == 200  # open: file_sd mode
    finally:
        srv.stop()


# --- settings -------------------------------------------------------------------------------


def test_off_cloud_foundry_no_credentials_and_loopback_as_before() -> None:
    s = SdSettings.from_env(BASE_ENV)
    assert (s.listen_host, s.listen_port, s.http_auth) == ("127.0.0.1", 8095, None)
    assert s.metrics == Access()


def test_on_cloud_foundry_credentials_are_required() -> None:
    with pytest.raises(ConfigError) as err:
        SdSettings.from_env({**BASE_ENV, **ON_CF, "PORT": "8080"})
    assert "SD_HTTP_USERNAME and SD_HTTP_PASSWORD (or SD_HTTP_BEARER_TOKEN) are required on Cloud Foundry" in str(
        err.value
    )


def test_on_cloud_foundry_sd_listens_on_all_interfaces_at_port() -> None:
    env = {**BASE_ENV, **ON_CF, "PORT": "61001", "SD_LISTEN_PORT": "9999", "SD_LISTEN_HOST": "127.0.0.1",
           "SD_HTTP_USERNAME": USER, "SD_HTTP_PASSWORD": PASSWORD}
    s = SdSettings.from_env(env)
    assert (s.listen_host, s.listen_port) == ("0.0.0.0", 61001)
    assert s.http_auth is not None and s.http_auth.allows(_basic(USER, PASSWORD)["Authorization"])
    # No METRICS_*: /metrics takes the same credential as /targets.
    assert s.metrics == Access(s.http_auth)
    assert PASSWORD not in repr(s)
    bearer = SdSettings.from_env({**BASE_ENV, **ON_CF, "PORT": "61001", "SD_HTTP_BEARER_TOKEN": TOKEN})
    assert bearer.http_auth is not None and bearer.http_auth.allows(f"Bearer {TOKEN}")
    with_metrics = SdSettings.from_env(
        {**env, "METRICS_USERNAME": "metrics", "METRICS_PASSWORD": METRICS_PASSWORD}
    )
    assert with_metrics.metrics.credentials == HttpCredentials("metrics", METRICS_PASSWORD, "", "tenant-metrics metrics")


@pytest.mark.parametrize("env, problem", [
    ({"SD_HTTP_USERNAME": USER}, "SD_HTTP_USERNAME and SD_HTTP_PASSWORD go together"),
    ({"SD_HTTP_PASSWORD": PASSWORD}, "SD_HTTP_USERNAME and SD_HTTP_PASSWORD go together"),
    ({"SD_HTTP_USERNAME": "a:b", "SD_HTTP_PASSWORD": PASSWORD}, "SD_HTTP_USERNAME must not contain ':'"),
    ({"SD_HTTP_USERNAME": USER, "SD_HTTP_PASSWORD": "short"}, "SD_HTTP_PASSWORD must be at least 16"),
    ({"SD_HTTP_BEARER_TOKEN": "short"}, "SD_HTTP_BEARER_TOKEN must be at least 16"),
    ({"METRICS_PASSWORD": METRICS_PASSWORD}, "METRICS_USERNAME and METRICS_PASSWORD go together"),
])
def test_bad_credentials_settings_are_named(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        SdSettings.from_env({**BASE_ENV, **env})
    assert problem in str(err.value)
    assert PASSWORD not in str(err.value)


def test_credentials_from_env_none_when_unset() -> None:
    assert credentials_from_env({}, "SD_HTTP") is None


def test_sd_run_on_cloud_foundry_without_credentials_fails_at_start_in_one_line(tmp_path: Path) -> None:
    env = part_env({**BASE_ENV, **ON_CF, "PORT": "8080", "DATABASE_URL": f"sqlite:///{tmp_path / 'sd.db'}"})
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "tenant_metrics", "sd", "run"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and time.monotonic() - started < 60
    assert "SD_HTTP_USERNAME and SD_HTTP_PASSWORD" in done.stderr
    assert "Traceback" not in done.stderr and "aiven-token" not in done.stderr
