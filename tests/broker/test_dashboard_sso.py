"""Dashboard SSO in the broker: the settings, the catalog's dashboard_client, per-instance dashboard URLs."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest
from prometheus_client import CollectorRegistry

from broker.app import create_app
from broker.config import BrokerSettings, DashboardClient, from_env
from tenant_metrics.core.errors import ConfigError
from tenant_metrics.world import serve_wsgi
from tests.broker.conftest import Osb, broker_env
from tests.broker.test_conformance import catalog_problems

CLIENT_ID = "tenant-metrics-dashboard"
CLIENT_SECRET = "dashboard-secret-7Hq2-xK9p-Lm4w"
SSO = {"DASHBOARD_CLIENT_ID": CLIENT_ID, "DASHBOARD_CLIENT_SECRET": CLIENT_SECRET}
GOOD = {"BROKER_USERNAME": "cc", "BROKER_PASSWORD": "a-long-enough-password-123", "DATABASE_URL": "sqlite:///x.db",
        "GATEWAY_PUBLIC_URL": "https://metrics.example.org/", **SSO}
GATEWAY = "https://metrics.example.org"  # the public URL of broker_env()


@contextmanager
def _broker(settings: BrokerSettings) -> Iterator[Osb]:
    """The broker app on a real loopback server, and an OSB client for it."""
    app = create_app(settings, registry=CollectorRegistry(), configure_logging=False)
    try:
        with serve_wsgi(app) as url:
            client = Osb(url, settings)
            try:
                yield client
            finally:
                client.session.close()
    finally:
        app.extensions["tenant_metrics_broker"].store.engine.dispose()


@pytest.fixture
def sso_settings(database_url: str) -> BrokerSettings:
    return from_env(broker_env(database_url, **SSO))


@pytest.fixture
def sso_osb(sso_settings: BrokerSettings) -> Iterator[Osb]:
    with _broker(sso_settings) as client:
        yield client


# -- settings -------------------------------------------------------------------------------

def test_sso_is_off_without_a_client_id() -> None:
    settings = from_env({**GOOD, "DASHBOARD_CLIENT_ID": "", "DASHBOARD_CLIENT_SECRET": ""})
    assert settings.dashboard_client is None
    assert settings.dashboard_url("inst-1") == f"{GATEWAY}/ui/"


def test_sso_settings_carry_the_client_and_its_redirect_uri() -> None:
    settings = from_env(GOOD)
    assert settings.dashboard_client == DashboardClient(
        id=CLIENT_ID, secret=CLIENT_SECRET, redirect_uri=f"{GATEWAY}/ui/sso/callback")
    assert settings.dashboard_url("8a6b2f0e-4c1d-4e7a-9f3b-2d5c8e1a7b90") == (
        f"{GATEWAY}/ui/instances/8a6b2f0e-4c1d-4e7a-9f3b-2d5c8e1a7b90")
    assert CLIENT_SECRET not in repr(settings) and CLIENT_SECRET not in repr(settings.dashboard_client)
    assert CLIENT_ID in repr(settings.dashboard_client)


def test_a_gateway_below_a_path_keeps_its_path() -> None:
    settings = from_env({**GOOD, "GATEWAY_PUBLIC_URL": "https://apps.example.org/metrics/"})
    assert settings.dashboard_client is not None
    assert settings.dashboard_client.redirect_uri == "https://apps.example.org/metrics/ui/sso/callback"
    assert settings.dashboard_url("i-1") == "https://apps.example.org/metrics/ui/instances/i-1"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8090", "http://localhost:8090", "http://[::1]:8090",
                                 "http://LOCALHOST:8090"])
def test_plain_http_is_allowed_on_the_loopback_host(url: str) -> None:
    settings = from_env({**GOOD, "GATEWAY_PUBLIC_URL": url})
    assert settings.dashboard_client is not None
    assert settings.dashboard_client.redirect_uri == url + "/ui/sso/callback"


def test_the_longest_client_id_and_every_allowed_character_are_accepted() -> None:
    longest = ("Az09._:-" * 32)[:255]
    settings = from_env({**GOOD, "DASHBOARD_CLIENT_ID": longest})
    assert settings.dashboard_client is not None and settings.dashboard_client.id == longest


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"DASHBOARD_CLIENT_SECRET": ""}, "DASHBOARD_CLIENT_SECRET is required when DASHBOARD_CLIENT_ID is set"),
        ({"DASHBOARD_CLIENT_SECRET": "Sh0rt-secret-9"}, "DASHBOARD_CLIENT_SECRET must be at least 16 characters"),
        ({"DASHBOARD_CLIENT_SECRET": "abababababababababab"}, "DASHBOARD_CLIENT_SECRET must use at least 6 distinct"),
        ({"DASHBOARD_CLIENT_SECRET": CLIENT_ID.upper()}, "DASHBOARD_CLIENT_SECRET must differ from DASHBOARD_CLIENT_ID"),
        ({"DASHBOARD_CLIENT_ID": "tenant metrics"}, "DASHBOARD_CLIENT_ID must be 1 to 255 of the characters"),
        ({"DASHBOARD_CLIENT_ID": "a/b"}, "DASHBOARD_CLIENT_ID must be 1 to 255"),
        ({"DASHBOARD_CLIENT_ID": "é-client"}, "DASHBOARD_CLIENT_ID must be 1 to 255"),
        ({"DASHBOARD_CLIENT_ID": "x" * 256}, "DASHBOARD_CLIENT_ID must be 1 to 255"),
        ({"GATEWAY_PUBLIC_URL": "http://metrics.example.org"}, "GATEWAY_PUBLIC_URL must be https when DASHBOARD_CLIENT_ID is set"),
        ({"GATEWAY_PUBLIC_URL": "http://10.0.0.5:8090"}, "GATEWAY_PUBLIC_URL must be https"),
        ({"GATEWAY_PUBLIC_URL": "http://localhost.example.org"}, "GATEWAY_PUBLIC_URL must be https"),
    ],
)
def test_refusals_name_the_variable_and_never_show_the_secret(changes: dict[str, str], message: str) -> None:
    env = {**GOOD, **changes}
    with pytest.raises(ConfigError) as caught:
        from_env(env)
    assert message in str(caught.value)
    secret = env["DASHBOARD_CLIENT_SECRET"]
    assert not secret or secret not in str(caught.value)


def test_plain_http_elsewhere_is_fine_while_sso_is_off() -> None:
    env = {**GOOD, "GATEWAY_PUBLIC_URL": "http://metrics.example.org", "DASHBOARD_CLIENT_ID": ""}
    assert from_env(env).dashboard_client is None


def test_every_sso_problem_is_reported_at_once_with_the_others() -> None:
    with pytest.raises(ConfigError) as caught:
        from_env({**GOOD, "BROKER_USERNAME": "a:b", "DASHBOARD_CLIENT_ID": "bad id",
                  "DASHBOARD_CLIENT_SECRET": "", "GATEWAY_PUBLIC_URL": "http://metrics.example.org"})
    named = [p.split()[0] for p in caught.value.problems]
    assert named == ["BROKER_USERNAME", "DASHBOARD_CLIENT_ID", "DASHBOARD_CLIENT_SECRET", "GATEWAY_PUBLIC_URL"]


# -- the catalog, over HTTP -------------------------------------------------------------------

def test_catalog_advertises_the_dashboard_client(sso_osb: Osb) -> None:
    resp = sso_osb.request("GET", "/v2/catalog")
    assert resp.status_code == 200, resp.text
    assert catalog_problems(resp.json()) == []
    [service] = resp.json()["services"]
    assert service["dashboard_client"] == {
        "id": CLIENT_ID, "secret": CLIENT_SECRET, "redirect_uri": f"{GATEWAY}/ui/sso/callback"}


def test_catalog_without_sso_has_no_dashboard_client_key(osb: Osb) -> None:
    resp = osb.request("GET", "/v2/catalog")
    assert resp.status_code == 200, resp.text
    [service] = resp.json()["services"]
    assert "dashboard_client" not in service
    assert service["id"] == osb.service_id  # the same catalog otherwise


# -- dashboard_url, over HTTP -----------------------------------------------------------------

def test_dashboard_url_is_the_instance_page_on_provision_update_and_get(sso_osb: Osb) -> None:
    iid = "8a6b2f0e-4c1d-4e7a-9f3b-2d5c8e1a7b90"
    expected = {"dashboard_url": f"{GATEWAY}/ui/instances/{iid}"}
    first = sso_osb.provision(iid)
    assert first.status_code == 201, first.text
    assert first.json() == expected
    again = sso_osb.provision(iid)
    assert again.status_code == 200 and again.json() == expected
    updated = sso_osb.update(iid, {"service_id": sso_osb.service_id, "plan_id": sso_osb.org_plan})
    assert updated.status_code == 200, updated.text
    assert updated.json() == expected
    got = sso_osb.request("GET", f"/v2/service_instances/{iid}")
    assert got.status_code == 200 and got.json()["dashboard_url"] == expected["dashboard_url"]
    other = sso_osb.provision("inst-2")
    assert other.json() == {"dashboard_url": f"{GATEWAY}/ui/instances/inst-2"}


def test_an_instance_id_that_is_not_url_safe_is_percent_encoded(sso_osb: Osb) -> None:
    iid = "inst ä?#&=1"
    path_id = quote(iid, safe="")  # how a client puts it into the OSB path
    expected = f"{GATEWAY}/ui/instances/inst%20%C3%A4%3F%23%26%3D1"
    assert sso_osb.provision(path_id).json() == {"dashboard_url": expected}
    assert sso_osb.request("GET", f"/v2/service_instances/{path_id}").json()["dashboard_url"] == expected
    updated = sso_osb.update(path_id, {"service_id": sso_osb.service_id, "plan_id": sso_osb.org_plan})
    assert updated.json() == {"dashboard_url": expected}


def test_dashboard_url_stays_the_tenant_page_without_sso(osb: Osb) -> None:
    expected = {"dashboard_url": f"{GATEWAY}/ui/"}
    assert osb.provision("inst-1").json() == expected
    assert osb.update("inst-1", {"service_id": osb.service_id, "plan_id": osb.org_plan}).json() == expected
    assert osb.request("GET", "/v2/service_instances/inst-1").json()["dashboard_url"] == expected["dashboard_url"]


# -- the secret stays out of the logs ---------------------------------------------------------

def test_the_client_secret_is_never_logged(sso_settings: BrokerSettings, log_output: io.StringIO) -> None:
    with _broker(sso_settings) as client:  # started while logs are captured
        assert client.request("GET", "/v2/catalog").json()["services"][0]["dashboard_client"]["secret"] == CLIENT_SECRET
        client.provision("inst-1")
        client.update("inst-1", {"service_id": client.service_id, "plan_id": client.org_plan})
        client.request("GET", "/v2/service_instances/inst-1")
    logged = log_output.getvalue()
    assert "GET /v2/catalog 200" in logged  # the capture saw the requests
    assert CLIENT_SECRET not in logged
