"""BrokerSettings.from_env: defaults, overrides, and clear refusals naming the variable."""

from __future__ import annotations

import pytest

from broker.config import DEFAULT_ORG_PLAN_ID, DEFAULT_SERVICE_ID, DEFAULT_SPACE_PLAN_ID, from_env
from tenant_metrics.core.credentials import derive_key
from tenant_metrics.core.errors import ConfigError

GOOD = {"BROKER_USERNAME": "cc", "BROKER_PASSWORD": "a-long-enough-password-123", "DATABASE_URL": "sqlite:///x.db"}


def test_make_broker_defaults_are_accepted() -> None:
    # The Makefile's local defaults (make broker) must start.
    s = from_env({**GOOD, "BROKER_USERNAME": "broker", "BROKER_PASSWORD": "broker-password-change-me"})
    assert s.username == "broker"


def test_defaults() -> None:
    s = from_env(GOOD)
    assert (s.username, s.port, s.max_body_bytes) == ("cc", 8080, 64 * 1024)
    assert s.gateway_public_url == "http://127.0.0.1:8090"
    assert s.dashboard_url("inst-1") == "http://127.0.0.1:8090/ui/" and s.dashboard_client is None
    assert s.credentials_key == derive_key(GOOD["BROKER_PASSWORD"])
    assert (s.catalog.service_id, s.catalog.space_plan_id, s.catalog.org_plan_id) == (
        DEFAULT_SERVICE_ID, DEFAULT_SPACE_PLAN_ID, DEFAULT_ORG_PLAN_ID)
    assert s.catalog.documentation_url == "http://127.0.0.1:8090/docs/tenant-guide.md"
    assert "a-long-enough" not in repr(s) and "sqlite" not in repr(s)


def test_overrides() -> None:
    s = from_env({
        **GOOD,
        "GATEWAY_PUBLIC_URL": "https://metrics.example.org/",
        "CREDENTIALS_KEY": "another-key-of-enough-length",
        "BROKER_SERVICE_ID": "svc", "BROKER_SERVICE_NAME": "metrics", "BROKER_SPACE_PLAN_ID": "p1",
        "BROKER_ORG_PLAN_ID": "p2", "PORT": "9000", "MAX_BODY_BYTES": "2048",
        "BROKER_DOCUMENTATION_URL": "https://docs.example.org/metrics",
    })
    assert s.gateway_public_url == "https://metrics.example.org"
    assert s.credentials_key == derive_key("another-key-of-enough-length")
    assert (s.catalog.service_id, s.catalog.service_name, s.catalog.space_plan_id, s.catalog.org_plan_id) == (
        "svc", "metrics", "p1", "p2")
    assert (s.port, s.max_body_bytes) == (9000, 2048)
    assert s.catalog.documentation_url == s.catalog.support_url == "https://docs.example.org/metrics"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"BROKER_USERNAME": ""}, "BROKER_USERNAME is required"),
        ({"BROKER_PASSWORD": ""}, "BROKER_PASSWORD is required"),
        ({"BROKER_PASSWORD": "short-pass"}, "at least 16 characters"),
        ({"BROKER_PASSWORD": "aaaaaaaaaaaaaaaaaaaaaa"}, "distinct characters"),
        ({"BROKER_USERNAME": "cloud-controller-2024", "BROKER_PASSWORD": "Cloud-Controller-2024"}, "must differ from BROKER_USERNAME"),
        ({"BROKER_USERNAME": "a:b"}, "must not contain ':'"),
        ({"CREDENTIALS_KEY": "tiny"}, "CREDENTIALS_KEY"),
        ({"GATEWAY_PUBLIC_URL": "metrics.example.org"}, "GATEWAY_PUBLIC_URL must be an http(s) URL"),
        ({"GATEWAY_PUBLIC_URL": "https://u:p@metrics.example.org"}, "must not carry credentials"),
        ({"BROKER_SERVICE_NAME": "Tenant Metrics"}, "BROKER_SERVICE_NAME must be lowercase"),
        ({"BROKER_ORG_PLAN_ID": DEFAULT_SPACE_PLAN_ID}, "must differ"),
        ({"PORT": "http"}, "PORT must be an integer"),
        ({"MAX_BODY_BYTES": "10"}, "MAX_BODY_BYTES must be at least 1024"),
    ],
)
def test_refusals_name_the_variable(changes: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        from_env({**GOOD, **changes})
    assert message in str(caught.value)


def test_request_timeout_is_read_with_the_other_settings() -> None:
    assert from_env(GOOD).request_timeout == 4.5
    assert from_env({**GOOD, "BROKER_REQUEST_TIMEOUT": "10"}).request_timeout == 10.0
    with pytest.raises(ConfigError) as caught:
        from_env({**GOOD, "BROKER_REQUEST_TIMEOUT": "0.5", "BROKER_PASSWORD": "short"})
    named = [p.split()[0] for p in caught.value.problems]
    assert named[0] == "BROKER_PASSWORD" and named[-1] == "BROKER_REQUEST_TIMEOUT"
