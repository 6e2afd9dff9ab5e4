"""Aiven and Cloud Controller misbehaving: the last good targets always stay, failures show."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from sd.server import SdHttpServer, staleness_health
from tenant_metrics.fakes.cloudcontroller import FakeCloudController
from tests.sd.conftest import Harness


def _good_cycle(h: Harness, **env: str) -> tuple[Any, bytes]:
    for _ in range(3):
        h.tenant(integrated=True)
    app = h.app(**env)
    assert app.discovery.run_cycle().ok
    return app, h.targets_file.read_bytes()


@pytest.mark.parametrize(
    ("fault", "kwargs", "kind"),
    [
        ("error", {"status": 500}, "server_error"),
        ("error", {"status": 502}, "server_error"),
        ("rate_limit", {"retry_after": 600}, "rate_limited"),  # longer than we are willing to wait
        ("slow", {"seconds": 1.5}, "timeout"),
        ("truncate", {}, "bad_response"),
        ("invalid_json", {}, "bad_response"),
    ],
)
def test_aiven_failure_keeps_the_last_good_targets(
    sqlite_harness: Harness, fault: str, kwargs: dict[str, Any], kind: str
) -> None:
    h = sqlite_harness
    app, good = _good_cycle(h, SD_HTTP_TIMEOUT_SECONDS="0.5")
    h.tenant(integrated=True)  # a change that must not half-appear
    h.aiven.add_fault(fault, count=-1, path_contains="/service", **kwargs)

    report = app.discovery.run_cycle()

    assert not report.ok
    assert [(f.stage, f.kind) for f in report.failures] == [("aiven_list", kind)]
    assert h.targets_file.read_bytes() == good
    assert app.state.get() == good
    assert (
        app.registry.get_sample_value(
            "tenant_metrics_sd_failures_total", {"stage": "aiven_list", "kind": kind}
        )
        == 1
    )
    assert (
        app.registry.get_sample_value("tenant_metrics_sd_cycles_total", {"result": "failure"}) == 1
    )
    h.aiven.clear_faults()
    assert app.discovery.run_cycle().ok
    assert len(h.targets()) == 4


@pytest.mark.parametrize("fault", ["error", "truncate", "invalid_json"])
def test_transient_aiven_faults_are_retried_with_backoff(
    sqlite_harness: Harness, fault: str
) -> None:
    h = sqlite_harness
    h.tenant(integrated=True)
    h.aiven.add_fault(fault, count=1, path_contains="/service")
    app = h.app()
    assert app.discovery.run_cycle().ok
    assert h.aiven.call_count("GET /v1/project/{project}/service") == 2
    assert h.sleeps == [0.01]


def test_429_honours_retry_after_header(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    h.tenant(integrated=True)
    h.aiven.add_fault("rate_limit", count=1, retry_after=7, header=True)
    assert h.app().discovery.run_cycle().ok
    assert h.sleeps == [7.0]


def test_429_without_header_uses_the_try_again_message(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    h.tenant(integrated=True)
    h.aiven.add_fault("rate_limit", count=1, retry_after=28, header=False)
    assert h.app().discovery.run_cycle().ok
    assert h.sleeps == [28.0]


def test_429_on_create_is_retried_but_5xx_is_not(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    t = h.tenant()
    h.aiven.add_fault("rate_limit", count=1, method="POST", retry_after=3)
    assert h.app().discovery.run_cycle().ok
    assert h.aiven.call_count("POST") == 2 and h.sleeps == [3.0]
    assert len(h.aiven.integrations_for(t.aiven_name)) == 1


def test_bad_token_is_an_auth_failure_and_not_retried(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    _, good = _good_cycle(h)
    bad = h.app(AIVEN_API_TOKEN="wrong-token")
    before = h.aiven.call_count()
    report = bad.discovery.run_cycle()
    assert [(f.stage, f.kind) for f in report.failures] == [("aiven_list", "auth")]
    assert (
        "Invalid token" in report.failures[0].message
        and "wrong-token" not in report.failures[0].message
    )
    assert h.aiven.call_count() == before + 1
    assert h.targets_file.read_bytes() == good


def test_expired_cc_token_is_replaced_and_the_request_retried_once(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    app, _ = _good_cycle(h)
    assert h.cc.tokens_issued == 1
    h.cc.expire_tokens()
    t = h.tenant(integrated=True, tags=False)  # needs a CC lookup

    assert app.discovery.run_cycle().ok
    assert h.cc.tokens_issued == 2
    assert t.aiven_name in h.groups_by_service()


def test_cc_token_is_renewed_before_it_expires(
    database_url: str, fake_aiven: Any, tmp_path: Any
) -> None:
    with FakeCloudController(token_ttl=100) as cc:
        h = Harness(database_url, fake_aiven, cc, tmp_path)  # type: ignore[arg-type]
        try:
            app, _ = _good_cycle(h, SD_NAMES_REFRESH_SECONDS="60")
            lookups = cc.call_count("GET /v3")
            h.clock.advance(95)  # past the renewal margin (ttl/10), before the expiry
            assert app.discovery.run_cycle().ok
            assert cc.tokens_issued == 2
            assert cc.call_count("GET /v3") == lookups + 1  # no 401 round trip
        finally:
            h.close()


def test_cc_persistent_401_fails_after_one_retry(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    h.tenant(integrated=True, tags=False)
    h.cc.add_fault("error", count=-1, path_contains="/v3/", status=401)
    report = h.app().discovery.run_cycle()
    assert [(f.stage, f.kind) for f in report.failures] == [("owners", "auth")]
    assert h.cc.call_count("GET /v3") == 2 and h.cc.tokens_issued == 2
    assert h.targets() == []  # unresolved: no tenant labels, so no target


def test_cc_lookups_are_batched(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    for _ in range(250):
        h.tenant(integrated=True, tags=False)
    app = h.app()
    assert app.discovery.run_cycle().ok
    assert h.cc.call_count("GET /v3/service_instances") == 3  # 100 + 100 + 50, no 414
    assert len(h.targets()) == 250


def test_cc_truncated_answer_is_retried(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    t = h.tenant(integrated=True, tags=False)
    h.cc.add_fault("truncate", count=1, path_contains="/v3/")
    assert h.app().discovery.run_cycle().ok
    assert t.aiven_name in h.groups_by_service()


def test_an_empty_listing_must_be_seen_twice(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    app, good = _good_cycle(h)
    for name in list(h.aiven.services):
        h.aiven.delete_service(name)
    first = app.discovery.run_cycle()
    assert not first.ok and first.failures[0].kind == "suspicious_empty"
    assert h.targets_file.read_bytes() == good
    assert app.discovery.run_cycle().ok
    assert h.targets() == []


def test_http_sd_serves_the_last_good_targets(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    app, good = _good_cycle(h)
    clock = [app.discovery.last_success or 0.0]
    server = SdHttpServer(
        "127.0.0.1",
        0,
        app.registry,
        app.state,
        staleness_health(lambda: app.discovery.last_success, 0.0, 300, lambda: clock[0]),
    ).start()
    try:
        h.aiven.add_fault("error", count=-1, status=500)
        app.discovery.run_cycle()
        resp = requests.get(server.url + "/targets", timeout=5)
        assert resp.status_code == 200 and resp.content == good
        assert resp.headers["Content-Type"] == "application/json"
        metrics = requests.get(server.url + "/metrics", timeout=5).text
        assert (
            'tenant_metrics_sd_failures_total{kind="server_error",stage="aiven_list"} 1.0'
            in metrics
        )
        assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
        clock[0] += 301
        unhealthy = requests.get(server.url + "/healthz", timeout=5)
        assert unhealthy.status_code == 503 and unhealthy.json()["status"] == "unhealthy"
        assert requests.get(server.url + "/nope", timeout=5).status_code == 404
    finally:
        server.stop()


def test_a_new_process_serves_the_file_left_by_the_last_one(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    _, good = _good_cycle(h)
    h.aiven.add_fault("error", count=-1, status=500)
    fresh = h.app(holder="sd-restarted")
    assert fresh.state.get() == good
    assert not fresh.discovery.run_cycle().ok
    assert h.targets_file.read_bytes() == good
