"""The gateway's routes over real HTTP, against a recording upstream: what reaches Prometheus."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.config import GatewaySettings
from tenant_metrics.core import db
from tenant_metrics.world import serve_app, serve_wsgi
from tests.gateway.support import RecordingUpstream, TenantCreds, add_tenant

T_A = 'cf_space_guid="space-a"'
T_B = 'cf_organization_guid="org-2"'


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('gw') / 'gw.sqlite3'}"
    db.upgrade(url)
    return url


@pytest.fixture(scope="module")
def tenants(sqlite_url: str) -> dict[str, TenantCreds]:
    return {
        "a": add_tenant(sqlite_url, "space", "org-1", "space-a"),
        "b": add_tenant(sqlite_url, "org", "org-2", "space-b"),
    }


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[RecordingUpstream, str]]:
    rec = RecordingUpstream()
    with serve_wsgi(rec) as url:
        yield rec, url


def _settings(urls: tuple[str, ...], database_url: str, **overrides: object) -> GatewaySettings:
    base = GatewaySettings(prometheus_urls=urls, database_url=database_url, health_check_seconds=0.2)
    return replace(base, **overrides)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def gateway(
    upstream: tuple[RecordingUpstream, str], sqlite_url: str, tenants: dict[str, TenantCreds]
) -> Iterator[tuple[str, CollectorRegistry]]:
    registry = CollectorRegistry()
    app = create_app(_settings((upstream[1],), sqlite_url, rate_limit_burst=10000, rate_limit_per_second=10000.0), registry)
    with serve_app(app) as url:
        yield url, registry


@pytest.fixture
def rec(upstream: tuple[RecordingUpstream, str]) -> RecordingUpstream:
    upstream[0].requests.clear()
    upstream[0].fail_status = None
    return upstream[0]


def _error(resp: requests.Response, status: int, error_type: str) -> dict[str, str]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["status"] == "error"
    assert body["errorType"] == error_type
    assert "Traceback" not in resp.text
    return body


# --- queries -----------------------------------------------------------------------


def test_query_get_is_rebuilt_and_enforced(gateway, tenants, rec) -> None:
    url, _ = gateway
    resp = requests.get(
        url + "/api/v1/query",
        params={"query": 'up{job="x"}', "time": "1700000000", "unknown": "param", "stats": "all"},
        headers={"X-Scope-OrgID": "someone-else", "Cookie": "a=b", "X-Forwarded-For": "1.2.3.4"},
        auth=tenants["a"].auth,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["result"] == []
    assert "Set-Cookie" not in resp.headers
    got = rec.last()
    assert got.path == "/api/v1/query"
    assert got.method == "POST"  # always a form body upstream
    assert got.query == []
    assert got.params() == [("query", f'up{{{T_A},job="x"}}'), ("time", "1700000000.000"), ("timeout", "30s")]
    for header in ("X-Scope-Orgid", "Cookie", "Authorization", "X-Forwarded-For"):
        assert header not in got.headers


def test_query_post_form(gateway, tenants, rec) -> None:
    url, _ = gateway
    resp = requests.post(url + "/api/v1/query", data={"query": "sum(rate(x[5m]))"}, auth=tenants["b"].auth)
    assert resp.status_code == 200, resp.text
    got = rec.last()
    assert got.method == "POST"
    assert got.form[0] == ("query", f"sum (rate(x{{{T_B}}}[5m]))")


def test_query_in_url_and_body_is_refused(gateway, tenants, rec) -> None:
    url, _ = gateway
    resp = requests.post(
        url + "/api/v1/query?query=up", data={"query": "secret_metric"}, auth=tenants["a"].auth
    )
    _error(resp, 400, "bad_data")
    assert rec.paths() == []


def test_multipart_body_is_refused(gateway, tenants, rec) -> None:
    url, _ = gateway
    resp = requests.post(url + "/api/v1/query", files={"query": ("q", b"up")}, auth=tenants["a"].auth)
    _error(resp, 400, "bad_data")
    assert rec.paths() == []


def test_json_body_is_refused(gateway, tenants, rec) -> None:
    url, _ = gateway
    resp = requests.post(url + "/api/v1/query", json={"query": "up"}, auth=tenants["a"].auth)
    _error(resp, 400, "bad_data")


@pytest.mark.parametrize(
    "query",
    ["", "sum(", '{cf_space_guid="space-b"', "(" * 200 + "x" + ")" * 200, "x @ -1", "x" * 20000],
)
def test_bad_queries_are_400_bad_data(gateway, tenants, rec, query: str) -> None:
    url, _ = gateway
    resp = requests.post(url + "/api/v1/query", data={"query": query}, auth=tenants["a"].auth)
    _error(resp, 400, "bad_data")
    assert rec.paths() == []


def test_query_range(gateway, tenants, rec) -> None:
    url, _ = gateway
    resp = requests.get(
        url + "/api/v1/query_range",
        params={"query": "rate(x[1m])", "start": "2023-11-14T22:13:20Z", "end": "1700003600", "step": "15s", "timeout": "5s"},
        auth=tenants["a"].auth,
    )
    assert resp.status_code == 200, resp.text
    assert rec.last().params() == [
        ("query", f"rate(x{{{T_A}}}[1m])"),
        ("start", "1700000000.000"),
        ("end", "1700003600.000"),
        ("step", "15s"),
        ("timeout", "5s"),
    ]


@pytest.mark.parametrize(
    ("params", "status", "error_type"),
    [
        ({"start": "0", "end": "100000", "step": "1"}, 400, "bad_data"),  # > 11000 points
        ({"start": "0", "end": str(40 * 86400), "step": "3600"}, 422, "execution"),  # range too long
        ({"start": "100", "end": "50", "step": "1"}, 400, "bad_data"),
        ({"start": "0", "end": "60", "step": "0"}, 400, "bad_data"),
        ({"start": "0", "end": "60", "step": "-1"}, 400, "bad_data"),
        ({"start": "nope", "end": "60", "step": "1"}, 400, "bad_data"),
        ({"start": "0", "end": "NaN", "step": "1"}, 400, "bad_data"),
        ({"start": "0", "end": "60"}, 400, "bad_data"),
    ],
)
def test_query_range_limits(gateway, tenants, rec, params, status, error_type) -> None:
    url, _ = gateway
    resp = requests.get(url + "/api/v1/query_range", params={"query": "up", **params}, auth=tenants["a"].auth)
    _error(resp, status, error_type)
    assert rec.paths() == []


def test_query_exemplars_enforced(gateway, tenants, rec) -> None:
    url, _ = gateway
    resp = requests.get(
        url + "/api/v1/query_exemplars", params={"query": "x", "start": "1", "end": "2"}, auth=tenants["a"].auth
    )
    assert resp.status_code == 200
    assert rec.last().params() == [("query", f"x{{{T_A}}}"), ("start", "1.000"), ("end", "2.000")]


# --- series, labels, label values, federate -----------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/series", "/api/v1/labels", "/api/v1/label/job/values", "/federate"])
def test_match_absent_means_own_series(gateway, tenants, rec, path) -> None:
    url, _ = gateway
    resp = requests.get(url + path, auth=tenants["a"].auth)
    assert resp.status_code == 200, resp.text
    assert rec.last().path == path
    assert rec.last().get("match[]") == [f"{{{T_A}}}"]


def test_match_from_url_and_body_all_enforced(gateway, tenants, rec) -> None:
    url, _ = gateway
    resp = requests.post(
        url + "/api/v1/series?match[]=up",
        data=[("match[]", '{cf_space_guid="space-b"}'), ("start", "1"), ("end", "2"), ("limit", "5")],
        auth=tenants["a"].auth,
    )
    assert resp.status_code == 200, resp.text
    assert rec.last().get("match[]") == [f"up{{{T_A}}}", f'{{{T_A},cf_space_guid="space-b"}}']
    assert rec.last().get("limit") == ["5"]


@pytest.mark.parametrize("selector", ["rate(x[5m])", "x + y", "up offset 5m", "{}"])
def test_match_must_be_selectors(gateway, tenants, rec, selector) -> None:
    url, _ = gateway
    resp = requests.get(url + "/api/v1/series", params={"match[]": selector}, auth=tenants["a"].auth)
    _error(resp, 400, "bad_data")
    assert rec.paths() == []


@pytest.mark.parametrize("name", ["a-b", "1abc", "a.b", "%2e%2e"])
def test_label_values_name_validated(gateway, tenants, rec, name) -> None:
    url, _ = gateway
    resp = requests.get(url + f"/api/v1/label/{name}/values", auth=tenants["a"].auth)
    assert resp.status_code in (400, 404)
    assert resp.json()["status"] == "error"
    assert rec.paths() == []


def test_label_values_of_the_tenant_label(gateway, tenants, rec) -> None:
    url, _ = gateway
    resp = requests.get(url + "/api/v1/label/cf_space_guid/values", auth=tenants["a"].auth)
    assert resp.status_code == 200
    assert rec.last().path == "/api/v1/label/cf_space_guid/values"
    assert rec.last().get("match[]") == [f"{{{T_A}}}"]


# --- filtered and refused endpoints ---------------------------------------------------


def test_targets_filtered_to_the_tenant(gateway, tenants, rec) -> None:
    url, _ = gateway
    body = requests.get(url + "/api/v1/targets", auth=tenants["a"].auth).json()
    active = body["data"]["activeTargets"]
    assert [t["labels"]["cf_space_guid"] for t in active] == ["space-a"]
    assert active[0]["discoveredLabels"] == {}
    assert body["data"]["droppedTargets"] == []
    org = requests.get(url + "/api/v1/targets", auth=tenants["b"].auth).json()["data"]["activeTargets"]
    assert [t["labels"]["cf_organization_guid"] for t in org] == ["org-2"]


def test_metadata_comes_from_the_tenants_own_targets(gateway, tenants, rec) -> None:
    url, _ = gateway
    one = requests.get(url + "/api/v1/metadata", params={"metric": "mine_total", "x": "y"}, auth=tenants["a"].auth)
    assert one.json() == {"status": "success", "data": {"mine_total": [{"type": "counter", "help": "mine", "unit": ""}]}}
    assert rec.last().params() == [("match_target", f"{{{T_A}}}"), ("metric", "mine_total")]
    body = requests.get(url + "/api/v1/metadata", auth=tenants["a"].auth).json()
    assert body == {
        "status": "success",
        "data": {
            "mine_total": [{"type": "counter", "help": "mine", "unit": ""}],
            "up_seconds": [{"type": "gauge", "help": "up", "unit": "seconds"}],
        },
    }
    assert rec.paths() == ["/api/v1/targets/metadata"] * 2
    assert rec.last().params() == [("match_target", f"{{{T_A}}}")]
    bad = requests.get(url + "/api/v1/metadata", params={"metric": "a{b}"}, auth=tenants["a"].auth)
    _error(bad, 400, "bad_data")


def test_rules_show_the_tenants_own_alerts_only(gateway, tenants, rec) -> None:
    url, _ = gateway
    body = requests.get(url + "/api/v1/rules", auth=tenants["a"].auth).json()
    assert body["status"] == "success"
    [group] = body["data"]["groups"]
    assert (group["name"], group["file"], group["interval"]) == (
        "aiven-search-alerts", "/etc/prometheus/rules/aiven-search-alerts.yml", 60)
    [rule] = group["rules"]
    assert (rule["name"], rule["state"], rule["type"], rule["duration"]) == ("AivenSearchClusterRed", "firing", "alerting", 300)
    assert [a["labels"]["cf_space_guid"] for a in rule["alerts"]] == ["space-a"]
    assert "space-b" not in json.dumps(body) and "platform" not in json.dumps(body)
    # Only the constant type=alert reaches Prometheus.
    assert rec.paths() == ["/api/v1/rules"]
    assert rec.last().method == "GET" and rec.last().params() == [("type", "alert")]
    # org-2 sees its pending instance; the rule pinned to space-b is not org-2's to see either
    # (an org tenant cannot tell its own spaces' GUIDs from others').
    org = requests.get(url + "/api/v1/rules", auth=tenants["b"].auth).json()["data"]["groups"]
    assert [(r["name"], r["state"], [a["state"] for a in r["alerts"]]) for g in org for r in g["rules"]] == [
        ("AivenSearchClusterRed", "pending", ["pending"])]


def test_alerts_are_the_tenants_own_instances(gateway, tenants, rec) -> None:
    url, _ = gateway
    body = requests.get(url + "/api/v1/alerts", auth=tenants["a"].auth).json()
    assert body["status"] == "success" and set(body["data"]) == {"alerts"}
    assert [(a["labels"]["alertname"], a["labels"]["cf_space_guid"], a["state"]) for a in body["data"]["alerts"]] == [
        ("AivenSearchClusterRed", "space-a", "firing")]
    assert set(body["data"]["alerts"][0]) == {"labels", "annotations", "state", "activeAt", "value"}
    assert rec.paths() == ["/api/v1/rules"] and rec.last().params() == [("type", "alert")]
    org = requests.get(url + "/api/v1/alerts", auth=tenants["b"].auth).json()["data"]["alerts"]
    assert [(a["labels"]["cf_space_guid"], a["state"]) for a in org] == [("space-b", "pending")]


def test_rule_parameters_are_applied_by_the_gateway_never_forwarded(gateway, tenants, rec) -> None:
    url, _ = gateway
    params = [("rule_name[]", "AivenSearchClusterRed"), ("rule_group[]", "aiven-search-alerts"),
              ("file[]", "/etc/prometheus/rules/aiven-search-alerts.yml"), ("exclude_alerts", "true"),
              ("type", "alert")]
    body = requests.get(url + "/api/v1/rules", params=params, auth=tenants["a"].auth).json()
    [rule] = body["data"]["groups"][0]["rules"]
    assert (rule["name"], rule["state"]) == ("AivenSearchClusterRed", "firing") and "alerts" not in rule
    assert rec.last().params() == [("type", "alert")]
    for narrowing in ([("rule_name[]", "Nope")], [("rule_group[]", "nope")], [("file[]", "/nope.yml")]):
        got = requests.get(url + "/api/v1/rules", params=narrowing, auth=tenants["a"].auth).json()
        assert got == {"status": "success", "data": {"groups": []}}
    rec.requests.clear()
    record = requests.get(url + "/api/v1/rules", params={"type": "record"}, auth=tenants["a"].auth).json()
    assert record == {"status": "success", "data": {"groups": []}}
    assert rec.paths() == []  # nothing to ask: tenants see no recording rule


@pytest.mark.parametrize("params", [{"type": "alerts"}, {"type": "RECORD"}, {"exclude_alerts": "yes"},
                                    [("type", "alert"), ("type", "record")]])
def test_bad_rule_parameters_are_400(gateway, tenants, rec, params) -> None:
    url, _ = gateway
    _error(requests.get(url + "/api/v1/rules", params=params, auth=tenants["a"].auth), 400, "bad_data")
    assert rec.paths() == []


@pytest.mark.parametrize("answer", [
    {"status": "success", "data": {"groups": "nope"}},
    {"status": "success", "data": {"groups": [{"rules": [{"type": "alerting", "alerts": [1]}]}]}},
    {"status": "error"},
    ["not", "an", "envelope"],
])
@pytest.mark.parametrize("path", ["/api/v1/rules", "/api/v1/alerts"])
def test_malformed_rules_upstream_is_503(gateway, tenants, rec, answer, path) -> None:
    url, _ = gateway
    rec.rules = answer
    try:
        _error(requests.get(url + path, auth=tenants["a"].auth), 503, "unavailable")
    finally:
        from tests.gateway.support import RULES

        rec.rules = RULES


@pytest.mark.parametrize("path", ["/api/v1/rules", "/api/v1/alerts"])
def test_rules_upstream_failing_is_503(gateway, tenants, rec, path) -> None:
    url, _ = gateway
    rec.fail_status = 500
    body = _error(requests.get(url + path, auth=tenants["a"].auth), 503, "unavailable")
    assert "boom" not in body["error"]


def test_buildinfo_forwarded(gateway, tenants, rec) -> None:
    url, _ = gateway
    assert requests.get(url + "/api/v1/status/buildinfo", auth=tenants["a"].auth).status_code == 200
    assert rec.last().path == "/api/v1/status/buildinfo"
    assert rec.last().params() == []


REFUSED = [
    ("GET", "/api/v1/status/config"),
    ("GET", "/api/v1/status/flags"),
    ("GET", "/api/v1/status/tsdb"),
    ("GET", "/api/v1/status/runtimeinfo"),
    ("GET", "/api/v1/status/walreplay"),
    ("POST", "/api/v1/admin/tsdb/delete_series"),
    ("POST", "/api/v1/admin/tsdb/snapshot"),
    ("PUT", "/api/v1/admin/tsdb/clean_tombstones"),
    ("POST", "/api/v1/write"),
    ("POST", "/api/v1/read"),
    ("POST", "/api/v1/otlp/v1/metrics"),
    ("GET", "/api/v1/alertmanagers"),
    ("GET", "/api/v1/targets/metadata"),
]


@pytest.mark.parametrize(("method", "path"), REFUSED)
def test_refused_endpoints_are_403(gateway, tenants, rec, method, path) -> None:
    url, _ = gateway
    resp = requests.request(method, url + path, auth=tenants["a"].auth)
    _error(resp, 403, "bad_data")
    assert rec.paths() == []


RAW_PATHS = [
    "/api/v1/../v1/admin/tsdb/delete_series?match[]=up",
    "/api/v1/query/../admin/tsdb/snapshot",
    "/api/v1/%2e%2e/admin/tsdb/snapshot",
    "/api/v1/admin%2Ftsdb%2Fsnapshot",
    "//api/v1/query?query=up",
    "/api//v1/query?query=up",
    "/api/v1/query/?query=up",
    "/api/v1/label/..%2F..%2Fadmin/values",
    "/api/v1/label/a/../../admin/values",
    "/-/reload",
    "/-/quit",
    "/graph",
    "/api/v2/status",
    "/API/V1/QUERY?query=up",
    "/api/v1/query%00?query=up",
    "/api/v1/query;x=1?query=up",
]


@pytest.mark.parametrize("path", RAW_PATHS)
@pytest.mark.parametrize("method", ["GET", "POST", "HEAD", "DELETE"])
def test_path_tricks_never_reach_upstream_unenforced(gateway, tenants, rec, path, method) -> None:
    """Raw request lines (no client-side normalisation): only fixed routes reach Prometheus."""
    url, _ = gateway
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    import base64

    token = base64.b64encode(f"{tenants['a'].username}:{tenants['a'].password}".encode()).decode()
    conn.putrequest(method, path, skip_accept_encoding=True)
    conn.putheader("Authorization", f"Basic {token}")
    conn.putheader("Content-Length", "0")
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    # The server may normalise "//api/v1/query" into the query route: allowed, if enforced.
    assert resp.status in (200, 400, 403, 404, 405), (resp.status, body)
    if resp.status != 200 and method != "HEAD":
        assert json.loads(body)["status"] == "error"
    if resp.status == 200:
        assert "query" in path and method in ("GET", "POST", "HEAD")
    for got in rec.requests:
        assert got.path in ("/api/v1/query", "/-/ready"), got.path
        assert all(T_A in v for k, v in got.params() if k == "query")


def test_head_on_a_query_is_enforced(gateway, tenants, rec) -> None:
    url, _ = gateway
    resp = requests.head(url + "/api/v1/query", params={"query": "up"}, auth=tenants["a"].auth)
    assert resp.status_code == 200
    assert rec.last().get("query") == [f"up{{{T_A}}}"]


def _cutting_upstream() -> tuple[str, threading.Thread, socket.socket]:
    """An upstream that starts a chunked 200 answer, sends one chunk, then closes."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n10\r\n{\"status\":\"succe\r\n")
                time.sleep(0.05)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", thread, listener


def test_an_answer_cut_short_upstream_is_cut_short_for_the_client(
        sqlite_url, tenants, caplog: pytest.LogCaptureFixture) -> None:
    """Never a complete-looking answer (no chunked end marker): the client sees the cut;
    counted as 499, logged as a warning, not as an error with a traceback."""
    upstream_url, _, listener = _cutting_upstream()
    registry = CollectorRegistry()
    try:
        with serve_app(create_app(_settings((upstream_url,), sqlite_url), registry)) as url:
            parts = urlsplit(url)
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            token = requests.auth._basic_auth_str(*tenants["a"].auth)
            conn.request("GET", "/api/v1/query?query=up", headers={"Authorization": token})
            resp = conn.getresponse()
            assert resp.status == 200
            with pytest.raises(http.client.IncompleteRead):
                resp.read()
            conn.close()
            deadline = time.monotonic() + 5
            sample = None
            while sample is None and time.monotonic() < deadline:
                sample = registry.get_sample_value(
                    "tenant_metrics_gateway_requests_total", {"endpoint": "query", "status": "499", "scope": "space"})
                time.sleep(0.05)
            assert sample == 1
    finally:
        listener.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert any(r.getMessage() == "upstream answer cut short" for r in caplog.records)


def test_unknown_api_path_is_404_even_after_auth(gateway, tenants, rec) -> None:
    url, _ = gateway
    _error(requests.get(url + "/api/v1/nope", auth=tenants["a"].auth), 404, "not_found")


# --- authentication ------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic"},
        {"Authorization": "Basic !!!notbase64"},
        {"Authorization": "Basic dXNlcm5hbWU="},  # "username", no colon
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": "Digest abc"},
        {"X-Scope-OrgID": "space-a"},
    ],
)
def test_unauthenticated(gateway, tenants, rec, headers) -> None:
    url, _ = gateway
    resp = requests.get(url + "/api/v1/query", params={"query": "up"}, headers=headers)
    _error(resp, 401, "unauthorized")
    assert resp.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert rec.paths() == []


def test_wrong_password_and_swapped_credentials(gateway, tenants, rec) -> None:
    url, _ = gateway
    a, b = tenants["a"], tenants["b"]
    for auth in [(a.username, "x" * 43), (a.username, b.password), ("tm-unknown", a.password), (a.username.upper(), a.password)]:
        _error(requests.get(url + "/api/v1/labels", auth=auth), 401, "unauthorized")
    assert rec.paths() == []


def test_bearer_password(gateway, tenants, rec) -> None:
    url, _ = gateway
    resp = requests.get(
        url + "/api/v1/query", params={"query": "up"}, headers={"Authorization": f"Bearer {tenants['b'].password}"}
    )
    assert resp.status_code == 200
    assert rec.last().get("query") == [f"up{{{T_B}}}"]


def test_healthz_and_metrics_are_public(gateway, tenants, rec) -> None:
    url, registry = gateway
    requests.get(url + "/api/v1/query", params={"query": "up"}, auth=tenants["a"].auth)
    assert requests.get(url + "/healthz").json() == {"status": "ok"}
    text = requests.get(url + "/metrics").text
    assert "tenant_metrics_gateway_requests_total" in text
    assert (registry.get_sample_value(
        "tenant_metrics_gateway_requests_total", {"endpoint": "query", "status": "200", "scope": "space"}
    ) or 0) >= 1
    assert (registry.get_sample_value("tenant_metrics_gateway_rewrite_seconds_count") or 0) >= 1


def test_compression_is_negotiated_not_forced(gateway, tenants, rec) -> None:
    url, _ = gateway
    requests.get(url + "/api/v1/query", params={"query": "up"}, auth=tenants["a"].auth, headers={"Accept-Encoding": "gzip"})
    assert rec.last().headers["Accept-Encoding"] == "gzip"
    requests.get(url + "/api/v1/query", params={"query": "up"}, auth=tenants["a"].auth, headers={"Accept-Encoding": "br"})
    assert rec.last().headers["Accept-Encoding"] == "identity"


# --- fair use, tenancy header option, database down -----------------------------------


def test_rate_limit_per_credential(upstream, sqlite_url, tenants, rec) -> None:
    app = create_app(_settings((upstream[1],), sqlite_url, rate_limit_burst=2, rate_limit_per_second=0.5), CollectorRegistry())
    with serve_app(app) as url:
        a, b = tenants["a"], tenants["b"]
        statuses = [requests.get(url + "/api/v1/labels", auth=a.auth).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        limited = requests.get(url + "/api/v1/labels", auth=a.auth)
        _error(limited, 429, "unavailable")
        assert int(limited.headers["Retry-After"]) >= 1
        assert requests.get(url + "/api/v1/labels", auth=b.auth).status_code == 200  # others unaffected


def test_scope_org_id_sent_for_mimir(upstream, sqlite_url, tenants, rec) -> None:
    app = create_app(_settings((upstream[1],), sqlite_url, scope_org_id="tenant"), CollectorRegistry())
    with serve_app(app) as url:
        requests.get(url + "/api/v1/labels", auth=tenants["b"].auth, headers={"X-Scope-OrgID": "org-1|org-2"})
        assert rec.last().headers["X-Scope-Orgid"] == "org-2"


def test_database_down_is_503(upstream, tmp_path: Path, rec) -> None:
    missing = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.sqlite3'}"
    app = create_app(_settings((upstream[1],), missing), CollectorRegistry())
    with serve_app(app) as url:
        resp = requests.get(url + "/api/v1/labels", auth=("tm-x", "y"))
        _error(resp, 503, "unavailable")


def test_upstream_down_is_503(sqlite_url, tenants) -> None:
    from tenant_metrics.world import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    app = create_app(_settings((dead,), sqlite_url, connect_timeout_seconds=0.5), CollectorRegistry())
    with serve_app(app) as url:
        resp = requests.get(url + "/api/v1/labels", auth=tenants["a"].auth)
        _error(resp, 503, "unavailable")


def test_upstream_errors_pass_through_in_prometheus_format(gateway, tenants, rec) -> None:
    url, _ = gateway
    rec.fail_status = 422
    rec.fail_body = b'{"status":"error","errorType":"execution","error":"too many samples"}'
    resp = requests.get(url + "/api/v1/query", params={"query": "up"}, auth=tenants["a"].auth)
    _error(resp, 422, "execution")


def test_revocation_takes_effect_within_a_second(upstream, database_url: str, rec) -> None:
    """On SQLite and PostgreSQL: a deleted binding stops working within the cache TTL."""
    from tests.gateway.support import revoke

    creds = add_tenant(database_url, "space", "org-9", "space-9")
    app = create_app(_settings((upstream[1],), database_url), CollectorRegistry())
    with serve_app(app) as url:
        assert requests.get(url + "/api/v1/labels", auth=creds.auth).status_code == 200
        revoke(database_url, creds.binding_id)
        revoked_at = time.monotonic()
        while requests.get(url + "/api/v1/labels", auth=creds.auth).status_code == 200:
            assert time.monotonic() - revoked_at < 1.5
            time.sleep(0.05)
        assert time.monotonic() - revoked_at <= 1.2


def test_range_in_the_query_longer_than_allowed_is_422(gateway, tenants, rec) -> None:
    url, _ = gateway
    resp = requests.get(url + "/api/v1/query", params={"query": "max_over_time(x[40d:1m])"}, auth=tenants["a"].auth)
    _error(resp, 422, "execution")
    assert rec.paths() == []


def test_client_request_ids_are_kept_only_when_plain(gateway, tenants, rec, caplog) -> None:
    import logging

    url, _ = gateway
    caplog.set_level(logging.INFO, logger="gateway")
    requests.get(url + "/api/v1/labels", auth=tenants["a"].auth, headers={"X-Request-Id": "abc-123"})
    requests.get(url + "/api/v1/labels", auth=tenants["a"].auth, headers={"X-Request-Id": '"}{"password":"x'})
    # A streamed answer reaches the client before the log line is written: wait for both.
    deadline = time.monotonic() + 5
    ids: list[str | None] = []
    while time.monotonic() < deadline:
        ids = [getattr(r, "request_id", None) for r in caplog.records if r.getMessage() == "request"]
        if len(ids) >= 2:
            break
        time.sleep(0.02)
    assert ids[-2] == "abc-123"
    assert ids[-1] and "password" not in ids[-1] and len(ids[-1]) == 32


def test_tenant_guide_is_public_at_the_catalogs_documentation_url(gateway, tenants, rec) -> None:
    """The broker's default documentationUrl is {GATEWAY_PUBLIC_URL}/docs/tenant-guide.md."""
    from broker.config import from_env as broker_settings

    url, _ = gateway
    settings = broker_settings({"BROKER_USERNAME": "cc", "BROKER_PASSWORD": "a-long-broker-secret-123",
                                "GATEWAY_PUBLIC_URL": url})
    doc_url = settings.catalog.documentation_url
    assert doc_url == url + "/docs/tenant-guide.md"
    resp = requests.get(doc_url)
    assert resp.status_code == 200 and "cf create-service-key" in resp.text
    # Public means only the guide: the API next to it still needs credentials.
    assert requests.get(url + "/api/v1/query", params={"query": "up"}).status_code == 401
    assert requests.get(url + "/docs/../api/v1/query", params={"query": "up"}).status_code in (401, 404)


def test_fractional_step_is_sent_as_float_seconds(gateway, tenants, rec) -> None:
    """Prometheus's duration syntax has no fractions ("1.5s" fails there); float seconds parse."""
    url, _ = gateway
    resp = requests.get(url + "/api/v1/query_range", auth=tenants["a"].auth,
                        params={"query": "up", "start": "0", "end": "60", "step": "1.5"})
    assert resp.status_code == 200, resp.text
    assert ("step", "1.5") in rec.last().params()
    resp = requests.get(url + "/api/v1/query_range", auth=tenants["a"].auth,
                        params={"query": "up", "start": "0", "end": "1", "step": "0.0005"})
    assert resp.status_code == 200, resp.text
    assert ("step", "0.0005") in rec.last().params()


@pytest.mark.parametrize("limit", ["١٢", "１２", "-1", "1e3", "x"])
def test_limit_must_be_ascii_digits(gateway, tenants, rec, limit: str) -> None:
    url, _ = gateway
    resp = requests.get(url + "/api/v1/labels", params={"limit": limit}, auth=tenants["a"].auth)
    assert _error(resp, 400, "bad_data")["error"].startswith('invalid parameter "limit"')


def test_refusal_names_the_refused_endpoint(gateway, tenants, rec) -> None:
    url, _ = gateway
    resp = requests.get(url + "/api/v1/targets/metadata", auth=tenants["a"].auth)
    assert _error(resp, 403, "bad_data")["error"] == "/api/v1/targets/metadata is not available through the tenant gateway"
    resp = requests.get(url + "/api/v1/status/config", auth=tenants["a"].auth)
    assert _error(resp, 403, "bad_data")["error"] == "/api/v1/status is not available through the tenant gateway"
