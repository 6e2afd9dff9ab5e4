"""The pure parts of sd, table-driven: names, targets, settings, 429 parsing, scrape config, writer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from sd import promconfig, writer
from sd.aiven import AivenService, Integration, parse_service
from sd.config import SdSettings
from sd.http import message_of, retry_after_seconds
from sd.integrator import backoff_for, needs_integration
from sd.owners import Owner, parse_instance_guid
from sd.targets import build_targets
from tenant_metrics.core import labels as L
from tenant_metrics.core.errors import ConfigError

GUID = "3f2c9a10-5b6d-4e7f-8a90-b1c2d3e4f5a6"
EP = "ep-1"


@pytest.mark.parametrize(
    ("name", "prefix", "expected"),
    [
        (f"prod-{GUID}", "prod", GUID),
        (f"prod-es-{GUID}", "prod-es", GUID),
        (f"PROD-ES-{GUID.upper()}", "prod-es", GUID),
        (f"prod-es-{GUID}", "prod", None),  # a longer prefix is someone else's
        (f"prod-{GUID}", "prod-es", None),
        (f"prod-{GUID}-x", "prod", None),
        ("prod-not-a-guid", "prod", None),
        (f"prod.{GUID}", "prod", None),
        (f"p.d-{GUID}", "p.d", GUID),  # regex characters in the prefix are literal
        (f"pxd-{GUID}", "p.d", None),
    ],
)
def test_parse_instance_guid(name: str, prefix: str, expected: str | None) -> None:
    assert parse_instance_guid(name, prefix) == expected


def _svc(
    name: str,
    *,
    state: str = "RUNNING",
    plan: str = "business-4",
    stype: str = "opensearch",
    integrations: tuple[Integration, ...] | None = None,
) -> AivenService:
    if integrations is None:
        integrations = (Integration("i-1", "prometheus", True, True, EP, name),)
    return AivenService(
        name, stype, state, plan, "aws-eu-west-2", f"{name}.example", 3, {}, integrations
    )


def _owner(guid: str = GUID) -> Owner:
    return Owner(
        guid, 'my "search"', "space-guid", "prod\\space", "org-guid", "Dept, of = {Examples} é"
    )


def test_build_targets_labels_order_and_addresses() -> None:
    services = [_svc("b-svc"), _svc("a-svc")]
    owners = {"a-svc": _owner(), "b-svc": _owner()}
    ips = {"a-svc": ["10.0.0.10", "10.0.0.9", "10.0.0.9"], "b-svc": ["2001:db8::1", "10.1.0.1"]}
    groups = build_targets(
        services, owners, ips, port=9273, endpoint_id=EP, eligible_types={"opensearch"}
    )
    assert [dict(g.labels)[L.AIVEN_SERVICE_NAME] for g in groups] == ["a-svc", "b-svc"]
    assert groups[0].targets == ("10.0.0.9:9273", "10.0.0.10:9273")
    assert groups[1].targets == ("10.1.0.1:9273", "[2001:db8::1]:9273")
    assert [name for name, _ in groups[0].labels] == list(L.TARGET_LABELS)
    assert dict(groups[0].labels)[L.CF_ORGANIZATION_NAME] == "Dept, of = {Examples} é"


@pytest.mark.parametrize(
    "service",
    [
        _svc("x", integrations=()),  # not integrated
        _svc(
            "x", integrations=(Integration(None, "prometheus", False, False, EP, "x"),)
        ),  # placeholder
        _svc(
            "x", integrations=(Integration("i", "prometheus", True, True, "other", "x"),)
        ),  # other endpoint
        _svc(
            "x", integrations=(Integration("i", "prometheus", False, False, EP, "x"),)
        ),  # disabled
        _svc("x", state="POWEROFF"),
        _svc("x", stype="pg"),
    ],
)
def test_services_that_are_not_targets(service: AivenService) -> None:
    assert (
        build_targets(
            [service],
            {"x": _owner()},
            {"x": ["10.0.0.1"]},
            port=9273,
            endpoint_id=EP,
            eligible_types={"opensearch"},
        )
        == []
    )


def test_unresolved_owner_or_no_address_means_no_target() -> None:
    kwargs = {"port": 9273, "endpoint_id": EP, "eligible_types": {"opensearch"}}
    assert build_targets([_svc("x")], {}, {"x": ["10.0.0.1"]}, **kwargs) == []  # type: ignore[arg-type]
    assert build_targets([_svc("x")], {"x": _owner()}, {}, **kwargs) == []  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        (_svc("x", integrations=()), True),
        (_svc("x", integrations=(Integration(None, "prometheus", False, False, EP, "x"),)), True),
        (_svc("x"), False),
        (_svc("x", integrations=(), plan="hobbyist"), False),
        (_svc("x", integrations=(), plan="free-1"), False),
        (_svc("x", integrations=(), state="REBUILDING"), False),
        (_svc("x", integrations=(), state="POWEROFF"), False),
        (_svc("x", integrations=(), stype="kafka"), False),
    ],
)
def test_needs_integration(service: AivenService, expected: bool) -> None:
    assert needs_integration(service, EP, {"opensearch"}) is expected


def test_backoff_doubles_and_is_capped() -> None:
    from datetime import timedelta

    base, cap = timedelta(minutes=1), timedelta(hours=1)
    assert [backoff_for(n, base, cap).total_seconds() for n in (1, 2, 3, 7, 20)] == [
        60,
        120,
        240,
        3600,
        3600,
    ]


def test_render_is_deterministic_and_valid_json(tmp_path: Path) -> None:
    groups = build_targets(
        [_svc("a")],
        {"a": _owner()},
        {"a": ["10.0.0.1"]},
        port=1,
        endpoint_id=EP,
        eligible_types={"opensearch"},
    )
    content = writer.render(groups)
    assert content == writer.render(list(groups))
    assert json.loads(content)[0]["labels"][L.CF_SPACE_NAME] == "prod\\space"
    assert writer.render([]) == b"[]\n"


def test_write_if_changed_is_atomic_and_lazy(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "targets.json"
    assert writer.write_if_changed(path, b"[]\n")
    inode = path.stat().st_ino
    assert not writer.write_if_changed(path, b"[]\n")
    assert path.stat().st_ino == inode
    assert writer.write_if_changed(path, b'[{"targets": []}]\n')
    assert path.stat().st_ino != inode  # replaced by rename, never rewritten in place
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in path.parent.iterdir()) == ["targets.json"]


@pytest.mark.parametrize(
    ("headers", "message", "expected"),
    [
        ({"Retry-After": "12"}, "try again in 28s", 12.0),
        ({}, "Rate limit 120 exceeded - try again in 28s", 28.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, "try again in 5s", 5.0),
        ({}, "slow down", None),
    ],
)
def test_retry_after(headers: dict[str, str], message: str, expected: float | None) -> None:
    assert retry_after_seconds(headers, message) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"message": "Service x does not exist", "errors": []}', "Service x does not exist"),
        (
            b'{"errors": [{"code": 1000, "title": "CF-InvalidAuthToken", "detail": "Invalid Auth Token"}]}',
            "CF-InvalidAuthToken: Invalid Auth Token",
        ),
        (b'{"error": "unauthorized", "error_description": "Bad credentials"}', "Bad credentials"),
        (b"<html>502 Bad Gateway</html>", "HTTP 502"),
    ],
)
def test_message_of(body: bytes, expected: str) -> None:
    assert message_of(body, "HTTP 502") == expected


def test_parse_service_reads_only_what_it_needs() -> None:
    svc = parse_service(
        {
            "service_name": "s",
            "service_type": "opensearch",
            "state": "RUNNING",
            "plan": "startup-4",
            "cloud_name": "c",
            "service_uri_params": {"host": "h", "password": "topsecret"},
            "node_states": [{"name": "s-1"}, {"name": "s-2"}],
            "service_integrations": [
                {"service_integration_id": None, "integration_type": "prometheus"},
                {"service_integration_id": "i", "integration_type": "datadog"},
            ],
        }
    )
    assert svc.host == "h" and svc.node_count == 2
    assert [(i.id, i.integration_type) for i in svc.integrations] == [(None, "prometheus")]
    assert "topsecret" not in repr(svc)


BASE_ENV = {
    "AIVEN_API_TOKEN": "tok-secret",
    "AIVEN_PROJECT": "p",
    "AIVEN_PROMETHEUS_ENDPOINT_ID": "e",
    "AIVEN_SERVICE_PREFIX": "prod-es",
    "DATABASE_URL": "sqlite:///x.db",
}


def test_settings_defaults_and_secrets_hidden() -> None:
    s = SdSettings.from_env(
        {
            **BASE_ENV,
            "CF_API_URL": "https://api.example/",
            "CF_CLIENT_ID": "c",
            "CF_CLIENT_SECRET": "cf-secret",
        }
    )
    assert s.aiven_api_url == "https://api.aiven.io"
    assert s.eligible_types == ("opensearch", "elasticsearch")
    assert (s.scrape_port, s.listen_port, s.interval_seconds) == (9273, 8095, 60.0)
    assert s.cloudfoundry is not None and s.cloudfoundry.api_url == "https://api.example"
    assert "tok-secret" not in repr(s) and "cf-secret" not in repr(s)


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"AIVEN_API_TOKEN": ""}, "AIVEN_API_TOKEN"),
        ({"AIVEN_PROJECT": ""}, "AIVEN_PROJECT"),
        ({"AIVEN_PROMETHEUS_ENDPOINT_ID": " "}, "AIVEN_PROMETHEUS_ENDPOINT_ID"),
        ({"AIVEN_SERVICE_PREFIX": ""}, "AIVEN_SERVICE_PREFIX"),
        ({"AIVEN_SERVICE_PREFIX": "prod-"}, "AIVEN_SERVICE_PREFIX"),
        ({"AIVEN_API_URL": "ftp://x"}, "AIVEN_API_URL"),
        ({"SD_INTERVAL_SECONDS": "0"}, "SD_INTERVAL_SECONDS"),
        ({"SD_INTERVAL_SECONDS": "soon"}, "SD_INTERVAL_SECONDS"),
        ({"SD_SCRAPE_PORT": "70000"}, "SD_SCRAPE_PORT"),
        ({"SD_LISTEN_PORT": "-1"}, "SD_LISTEN_PORT"),
        ({"SD_MAX_INTEGRATIONS_PER_CYCLE": "x"}, "SD_MAX_INTEGRATIONS_PER_CYCLE"),
        ({"CF_API_URL": "https://api.example"}, "CF_CLIENT_ID"),
        ({"CF_CLIENT_SECRET": "s"}, "CF_API_URL"),
    ],
)
def test_settings_errors_name_the_variable(change: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        SdSettings.from_env({**BASE_ENV, **change})


def test_scrape_job_is_what_aiven_recommends(tmp_path: Path) -> None:
    job = promconfig.scrape_job(
        targets_file="/t.json", username="u", password_file="/pw", ca_file="/ca.pem"
    )
    text = promconfig.render(job)
    parsed = yaml.safe_load(text)["scrape_configs"][0]
    assert parsed["scheme"] == "https" and parsed["honor_labels"] is False
    assert parsed["basic_auth"] == {"username": "u", "password_file": "/pw"}
    assert parsed["tls_config"] == {"ca_file": "/ca.pem", "insecure_skip_verify": True}
    assert parsed["file_sd_configs"][0]["files"] == ["/t.json"]
    assert os.sep in parsed["file_sd_configs"][0]["files"][0]
