"""Adversarial tests of tenant isolation against a real running system (tests/security/world.py).

Each test is one attack. It passes when the system resists it and fails when the attack
works. An attack found to work is marked ``xfail(strict=True)`` with the reason until it
is fixed (strict: the fix turns the XPASS into a failure, so the marker cannot linger).
None is open today: the four found in review (two parser-crash hiders, cross-tenant
metadata HELP text, NUL usernames on PostgreSQL) are fixed and pass.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import inspect, text

from tenant_metrics.core import labels as L
from tenant_metrics.core.db import make_engine
from tests.conftest import _drop_postgres_database, _new_postgres_database
from tests.security.world import (
    ALPHA,
    AMBER,
    BRAVO,
    BROKER_PASSWORD,
    INJECTED,
    ORG1,
    ORG2,
    SCRAPE_PASSWORD,
    SERVICES,
    Creds,
    World,
    running_world,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

VISIBLE = {"alpha": {"alpha"}, "org1": {"alpha", "amber"}, "bravo": {"bravo"}}
GUID = L.CF_SERVICE_INSTANCE_GUID
# Guesses an attacker tries as passwords; none may ever be written to a log.
GUESSED_SECRET = "Guessed-Secret-9b7e41f0c2"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          prometheus_binary: str) -> Iterator[World]:
    """The system under attack, once on each database (the credential lookup is SQL)."""
    workdir = tmp_path_factory.mktemp("security")
    if request.param == "sqlite":
        with running_world(workdir, prometheus_binary, f"sqlite:///{workdir / 'tm.sqlite3'}") as w:
            yield w
        return
    name, url = _new_postgres_database()
    try:
        with running_world(workdir, prometheus_binary, url) as w:
            yield w
    finally:
        _drop_postgres_database(name)


# --- what "isolated" means ------------------------------------------------------------------


def own_guids(tenant: str) -> set[str]:
    return {SERVICES[k].guid for k in VISIBLE[tenant]}


def forbidden(tenant: str) -> set[str]:
    """Strings that only another tenant's services carry: none may reach ``tenant``."""
    visible_values = {v for k in VISIBLE[tenant] for v in SERVICES[k].labels.values()}
    if tenant == "bravo":  # bravo's own (hostile) series carry alpha's guids as exported_* labels
        visible_values |= set(INJECTED.values())
    out: set[str] = set()
    for key, service in SERVICES.items():
        if key in VISIBLE[tenant]:
            continue
        out |= {v for v in service.labels.values() if v not in visible_values}
        out |= {service.address, f"{key}_only_metric", f"help-from-{key}"}
    return out


def assert_isolated(tenant: str, resp: requests.Response, sent: str = "") -> None:
    """No other tenant's value in the answer (unless the attacker typed it), and every
    series the answer carries belongs to one of the tenant's own services."""
    assert resp.status_code in (200, 400, 404, 422), f"{resp.status_code}: {resp.text[:300]}"
    leaked = sorted(m for m in forbidden(tenant) if m in resp.text and m not in sent)
    assert not leaked, f"{tenant} saw {leaked} in {resp.text[:500]}"
    if resp.status_code != 200 or not resp.headers.get("Content-Type", "").startswith("application/json"):
        return
    data = resp.json()["data"]
    series: list[dict[str, Any]] = []
    if isinstance(data, dict) and isinstance(data.get("result"), list):
        series = [r.get("metric", {}) for r in data["result"] if isinstance(r, dict)]
    elif isinstance(data, list) and data and isinstance(data[0], dict):
        series = data
    for labels in series:
        guid = labels.get(GUID)
        if guid is not None and guid not in sent:
            assert guid in own_guids(tenant), f"{tenant} got a series of {guid}: {labels}"


def gw(world: World, tenant: str, method: str, path: str, **kw: Any) -> requests.Response:
    return requests.request(method, world.gateway + path, auth=world.tenants[tenant].auth, timeout=60, **kw)


def query(world: World, tenant: str, promql: str, method: str = "GET") -> requests.Response:
    if method == "GET":
        return gw(world, tenant, "GET", "/api/v1/query", params={"query": promql})
    return gw(world, tenant, "POST", "/api/v1/query", data={"query": promql})


def result(resp: requests.Response) -> list[dict[str, Any]]:
    assert resp.status_code == 200, resp.text[:300]
    out: list[dict[str, Any]] = resp.json()["data"]["result"]
    return out


def services_in(resp: requests.Response) -> set[str]:
    return {r["metric"][GUID] for r in result(resp) if GUID in r["metric"]}


def raw_request(base: str, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes | None = None) -> tuple[int, dict[str, str], str]:
    """Send ``path`` exactly as written (no client-side normalisation of dots or escapes)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
    try:
        conn.putrequest(method, path, skip_host=False, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def basic(creds: Creds) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()


# --- 0. the baseline the attacks are measured against --------------------------------------


@pytest.mark.parametrize("tenant", sorted(VISIBLE))
def test_baseline_each_tenant_sees_exactly_its_own_services(world: World, tenant: str) -> None:
    for promql in ("up", "requests_total", 'shared_metric{node=~".+"}'):
        assert services_in(query(world, tenant, promql)) == own_guids(tenant)


# --- 1. PromQL tricks ---------------------------------------------------------------------

# {OS}: another space of the same org, {OO}: another org, {OG}: another tenant's service guid.
PROMQL_TRICKS = [
    'up{{cf_space_guid="{OS}"}}',
    'up{{cf_space_guid!="{OS}"}}',
    'up{{cf_space_guid!~"nothing"}}',
    'up{{cf_space_guid=~".*"}}',
    'up{{cf_space_guid=~".+"}}',
    'up{{cf_space_guid=~"(?i).*"}}',
    'up{{cf_space_guid=~"(?s).*"}}',
    'up{{cf_space_guid=""}}',
    'up{{cf_space_guid="x",cf_space_guid="{OS}"}}',
    'up{{cf_organization_guid="{OO}"}}',
    'up{{cf_organization_guid=~".+"}}',
    'up{{cf_service_instance_guid="{OG}"}}',
    '{{cf_service_instance_guid="{OG}"}}',
    '{{__name__=~".+"}}',
    '{{__name__!=""}}',
    '{{__name__=~".+",cf_space_guid="{OS}"}}',
    '{{__name__="up",__name__="up"}}',
    '{{"up"}}',
    '{{"up", cf_space_guid="{OS}"}}',
    'up{{"cf_space_guid"="{OS}"}}',
    'up{{CF_SPACE_GUID="{OS}"}}',
    'up{{cf_space_guid=`{OS}`}}',
    "up{{cf_space_guid='{OS}'}}",
    'up{{cf_space_guid="{OS}\\"}} or up{{cf_space_guid=\\"{OS}"}}',
    'up{{cf_space_guid="\\u0035e5e0003-0000-4000-8000-0000000000b3"}}',
    'up{{cf_space_guid="{OS}" or cf_space_guid!="{OS}"}}',
    '{{__name__="up" or cf_space_guid="{OS}"}}',
    'up # {{cf_space_guid="{OS}"}}',
    'up\n# }} or {{cf_space_guid="{OS}"}}\n',
    'up #\r or {{cf_space_guid=~".+"}}',
    'up{{cf_space_guid="{OS}"}} or up',
    'up or on() vector(1)',
    'vector(1) or up',
    'up unless on() up{{cf_space_guid="{OS}"}}',
    'up * on() group_left vector(1)',
    'up > on(job) group_left(cf_space_guid) up{{cf_space_guid="{OS}"}}',
    'up and on(job) up{{cf_space_guid="{OS}"}}',
    'label_replace(up, "cf_space_guid", "{OS}", "", "")',
    'label_replace(vector(1), "cf_space_guid", "{OS}", "", "")',
    'label_join(up, "cf_space_guid", "", "cf_organization_guid")',
    'count_values("cf_space_guid", up)',
    'sum by (cf_space_guid, cf_service_instance_guid) ({{__name__=~".+"}})',
    'count by (__name__) ({{__name__=~".+"}})',
    'group by (instance) ({{__name__=~".+"}})',
    'topk(1000, {{__name__=~".+"}})',
    'sort_desc(sum by (instance) (rate(requests_total[10s])))',
    'absent(up{{cf_space_guid="{OS}"}})',
    'absent_over_time(up{{cf_service_instance_guid="{OG}"}}[1m])',
    'max_over_time(up{{cf_space_guid="{OS}"}}[1m])',
    'max_over_time({{__name__=~".+"}}[1m:1s])',
    'rate({{__name__=~".+"}}[1m] @ end() offset 1s)',
    'last_over_time({{__name__=~".+"}}[1d])',
    '{{__name__=~".+"}} @ start()',
    '{{__name__=~".+"}} @ 100',
    'up offset 1s',
    'up[1m]',
    'up[1m:]',
    'timestamp({{__name__=~".+"}})',
    'scalar(count({{__name__=~".+"}}))',
    'holt_winters(requests_total[1m], 0.5, 0.5)',
    'quantile_over_time(0.5, up[1m])',
    '(((((((up)))))))',
    '-up',
    'up == bool 1',
    'sum without () ({{__name__=~".+"}})',
    'count(up) without (cf_space_guid)',
    'by{{cf_space_guid="{OS}"}}',
    'sum{{cf_space_guid="{OS}"}}',
    'offset{{cf_space_guid="{OS}"}}',
    'start',
    'end',
    'injected_metric',
    '{{exported_cf_space_guid=~".+"}}',
    'xss_probe',
    'bravo_only_metric',
    'amber_only_metric',
    'info(up)',
    'up{{cf_space_guid="{OS}"}}[5m] offset 1m @ 100',
    'up @ 0x10',
    'up%FF',
]


def _fill(template: str, tenant: str) -> str:
    other_space = AMBER if tenant == "alpha" else BRAVO
    return template.format(OS=other_space.labels[L.CF_SPACE_GUID], OO=ORG2, OG=BRAVO.guid)


@pytest.mark.parametrize("template", PROMQL_TRICKS)
@pytest.mark.parametrize("tenant", ["alpha", "org1"])
def test_promql_tricks_never_cross_tenants(world: World, tenant: str, template: str) -> None:
    promql = _fill(template, tenant)
    for method in ("GET", "POST"):
        assert_isolated(tenant, query(world, tenant, promql, method), sent=promql)


@pytest.mark.parametrize("template", PROMQL_TRICKS[:20] + ['{{__name__=~".+"}}[5s]', 'rate(requests_total[5s])'])
def test_promql_tricks_through_query_range_and_exemplars(world: World, template: str) -> None:
    promql = _fill(template, "alpha")
    now = time.time()
    resp = gw(world, "alpha", "POST", "/api/v1/query_range",
              data={"query": promql, "start": now - 60, "end": now, "step": "5"})
    assert_isolated("alpha", resp, sent=promql)
    resp = gw(world, "alpha", "GET", "/api/v1/query_exemplars", params={"query": promql, "start": now - 60, "end": now})
    assert_isolated("alpha", resp, sent=promql)


# --- 2. oracles: what a tenant can learn about others without seeing their series -------------


def test_other_tenants_services_are_indistinguishable_from_absent(world: World) -> None:
    """absent()/count() must answer for another tenant's service exactly as for a guid nobody has."""
    for guid in (BRAVO.guid, AMBER.guid, "00000000-0000-4000-8000-000000000000"):
        absent = result(query(world, "alpha", f'absent(up{{cf_service_instance_guid="{guid}"}})'))
        assert [r["value"][1] for r in absent] == ["1"]
        assert result(query(world, "alpha", f'count(up{{cf_service_instance_guid="{guid}"}})')) == []
    assert [r["value"][1] for r in result(query(world, "alpha", "absent(bravo_only_metric)"))] == ["1"]


@pytest.mark.parametrize("tenant", sorted(VISIBLE))
def test_aggregates_count_only_own_series(world: World, tenant: str) -> None:
    """An aggregate hides labels, so compare its value with the tenant's own series counted directly."""
    creds = world.tenants[tenant]
    scope_label = L.CF_ORGANIZATION_GUID if tenant == "org1" else L.CF_SPACE_GUID
    scope_value = ORG1 if tenant == "org1" else SERVICES[tenant].labels[L.CF_SPACE_GUID]
    direct = requests.get(world.prometheus + "/api/v1/query", timeout=30,
                          params={"query": f'count({{{scope_label}="{scope_value}"}})'}).json()
    expected = direct["data"]["result"][0]["value"][1]
    got = result(query(world, tenant, 'count({__name__=~".+"})'))
    assert [r["value"][1] for r in got] == [expected], creds.username
    spaces = result(query(world, tenant, 'count(count by (cf_space_guid) ({__name__=~".+"}))'))
    assert [r["value"][1] for r in spaces] == [str(len(VISIBLE[tenant]))]


# --- 3. metadata endpoints ----------------------------------------------------------------

MATCH_TRICKS = [
    '{{cf_space_guid="{OS}"}}', '{{cf_space_guid=~".+"}}', '{{__name__=~".+"}}', 'up{{cf_space_guid!="x"}}',
    '{{cf_organization_guid="{OO}"}}', '{{cf_service_instance_guid="{OG}"}}', '{{instance=~".+"}}',
    '{{__name__="up" or cf_space_guid="{OS}"}}', 'up #\r or {{cf_space_guid=~".+"}}', 'injected_metric',
]
MATCH_PATHS = ["/api/v1/series", "/api/v1/labels", f"/api/v1/label/{GUID}/values", "/api/v1/label/instance/values",
               "/api/v1/label/__name__/values", "/federate"]


@pytest.mark.parametrize("path", MATCH_PATHS)
@pytest.mark.parametrize("tenant", ["alpha", "org1"])
def test_match_selector_tricks_never_cross_tenants(world: World, tenant: str, path: str) -> None:
    selectors = [_fill(t, tenant) for t in MATCH_TRICKS]
    for selector in selectors:
        assert_isolated(tenant, gw(world, tenant, "GET", path, params={"match[]": selector}), sent=selector)
    # several at once, in the URL and the body, plus an empty one
    assert_isolated(tenant, gw(world, tenant, "GET", path, params=[("match[]", s) for s in selectors]),
                    sent="".join(selectors))
    assert_isolated(tenant, gw(world, tenant, "GET", path, params=[("match[]", "up"), ("match[]", "")]))
    if path.startswith("/api/v1/series") or path == "/api/v1/labels":
        resp = gw(world, tenant, "POST", path + "?match[]=up", data={"match[]": selectors[1]})
        assert_isolated(tenant, resp, sent=selectors[1])


@pytest.mark.parametrize("tenant", sorted(VISIBLE))
def test_label_values_are_exactly_the_tenants_own(world: World, tenant: str) -> None:
    for label, want in ((GUID, own_guids(tenant)),
                        (L.CF_SPACE_GUID, {SERVICES[k].labels[L.CF_SPACE_GUID] for k in VISIBLE[tenant]}),
                        ("instance", {SERVICES[k].address for k in VISIBLE[tenant]})):
        resp = gw(world, tenant, "GET", f"/api/v1/label/{label}/values")
        values = set(resp.json()["data"])
        if label == "instance":
            values = {v.split(":")[0] for v in values}
        assert values == want
    names = set(gw(world, tenant, "GET", "/api/v1/label/__name__/values").json()["data"])
    assert {f"{k}_only_metric" for k in VISIBLE[tenant]} <= names
    assert not {f"{k}_only_metric" for k in SERVICES if k not in VISIBLE[tenant]} & names


@pytest.mark.parametrize("state", [None, "active", "dropped", "any"])
@pytest.mark.parametrize("tenant", sorted(VISIBLE))
def test_targets_are_only_the_tenants_own(world: World, tenant: str, state: str | None) -> None:
    resp = gw(world, tenant, "GET", "/api/v1/targets", params={"state": state} if state else {})
    assert_isolated(tenant, resp)
    data = resp.json()["data"]
    assert data["droppedTargets"] == []
    want = set() if state == "dropped" else own_guids(tenant)
    assert {t["labels"][GUID] for t in data["activeTargets"]} == want
    assert all(not t.get("discoveredLabels") for t in data["activeTargets"])
    assert SCRAPE_PASSWORD not in resp.text


@pytest.mark.parametrize("tenant", sorted(VISIBLE))
def test_metadata_lists_only_metric_names_the_tenant_has(world: World, tenant: str) -> None:
    resp = gw(world, tenant, "GET", "/api/v1/metadata")
    names = set(resp.json()["data"])
    assert {f"{k}_only_metric" for k in VISIBLE[tenant]} <= names
    assert not {f"{k}_only_metric" for k in SERVICES if k not in VISIBLE[tenant]} & names
    other = "bravo" if tenant != "bravo" else "alpha"
    resp = gw(world, tenant, "GET", "/api/v1/metadata", params={"metric": f"{other}_only_metric"})
    assert resp.json()["data"] == {}


def test_metadata_help_text_of_other_tenants_exporters_is_not_shown(world: World) -> None:
    for params in ({}, {"metric": "shared_metric"}):
        resp = gw(world, "alpha", "GET", "/api/v1/metadata", params=params)
        helps = {m["help"] for m in resp.json()["data"].get("shared_metric", [])}
        assert helps == {"help-from-alpha"}, helps


def test_a_service_cannot_inject_series_into_another_tenants_view(world: World) -> None:
    """Bravo's exporter writes alpha's guids on its series; sd's scrape job (honor_labels: false)
    must keep them bravo's (renamed exported_*), so alpha never sees them."""
    assert result(query(world, "alpha", "injected_metric")) == []
    assert result(query(world, "alpha", '{exported_cf_space_guid=~".+"}')) == []
    own = result(query(world, "bravo", "injected_metric"))
    assert len(own) == 1
    labels = own[0]["metric"]
    assert labels[L.CF_SPACE_GUID] == BRAVO.labels[L.CF_SPACE_GUID]
    assert labels["exported_" + L.CF_SPACE_GUID] == ALPHA.labels[L.CF_SPACE_GUID]


# --- 4. HTTP tricks: paths, methods, parameters, bodies, headers ------------------------------

# Raw paths (sent byte for byte) that must never reach anything but a gateway refusal.
REFUSED_RAW = [
    ("GET", "/api/v1/status/config"), ("GET", "/api/v1/status/flags"), ("GET", "/api/v1/status/tsdb"),
    ("GET", "/api/v1/status/runtimeinfo"), ("GET", "/api/v1/status/walreplay"), ("GET", "/api/v1/targets/metadata"),
    ("GET", "/api/v1/alertmanagers"), ("POST", "/api/v1/admin/tsdb/snapshot"), ("PUT", "/api/v1/admin/tsdb/snapshot"),
    ("POST", "/api/v1/admin/tsdb/delete_series?match[]=up"), ("POST", "/api/v1/admin/tsdb/clean_tombstones"),
    ("POST", "/api/v1/write"), ("POST", "/api/v1/read"), ("POST", "/api/v1/otlp/v1/metrics"),
    ("POST", "/-/reload"), ("POST", "/-/quit"), ("GET", "/-/ready"), ("GET", "/graph"), ("GET", "/debug/pprof/"),
    ("GET", "/debug/pprof/heap"), ("GET", "/api/v1/format_query?query=up"), ("GET", "/api/v1/parse_query?query=up"),
    ("GET", "/api/v1/../api/v1/status/config"), ("GET", "/api/v1/query/../status/config"),
    ("GET", "/api/v1/%2e%2e/api/v1/status/config"), ("GET", "/api/v1/%73tatus/config"), ("GET", "/api/v1/status%2fconfig"),
    ("GET", "/api/v1/STATUS/config"), ("GET", "///api/v1/status/config"), ("GET", "/api/v1//status/config"),
    ("GET", "/api/v1/label/..%2f..%2fstatus%2fconfig/values"), ("GET", "/api/v1/label/__name__/values/../../status/config"),
    ("GET", "/ui/../api/v1/status/config"), ("GET", "/ui/static/..%2f..%2f..%2fcommon%2fcredentials.py"),
    ("GET", "/ui/dashboards/..%2f..%2f..%2fpyproject.toml"), ("GET", "/api/v1/query;/../status/config"),
    ("DELETE", "/api/v1/series?match[]=up"), ("PUT", "/api/v1/query?query=up"), ("PATCH", "/api/v1/query?query=up"),
    ("GET", "http://127.0.0.1:1/api/v1/status/config"), ("GET", "/api/v1/scrape_pools"), ("GET", "/api/v1/notifications"),
]
# Text that only Prometheus's unfiltered internals answer with.
INTERNALS = ("scrape_configs", "storage.tsdb", "seriesCountByMetricName", "goroutine", "scrape-password",
             "reloadConfigSuccess", "headStats", "__meta_")


@pytest.mark.parametrize(("method", "path"), REFUSED_RAW)
def test_refused_and_tricky_paths(world: World, method: str, path: str) -> None:
    headers = {"Authorization": basic(world.tenants["alpha"])}
    status, resp_headers, body = raw_request(world.gateway, method, path, headers, b"" if method != "GET" else None)
    assert status in (400, 403, 404, 405), f"{status}: {body[:300]}"
    assert not [s for s in INTERNALS if s in body], body[:300]
    assert not [m for m in forbidden("alpha") if m in body]
    assert resp_headers.get("content-type", "").startswith("application/json"), resp_headers
    assert json.loads(body)["status"] == "error"


@pytest.mark.parametrize("path", ["/api/v1/%71uery?query=up", "//api/v1/query?query=up",
                                  "/api/v1/query?query=up#{cf_space_guid=~\".+\"}",
                                  "/api/v1/query?query=up&%71uery=%7Bcf_space_guid%3D~%22.%2B%22%7D",
                                  "/api/v1/label/%63f_space_guid/values", "/federate?match[]=%7B__name__%3D~%22.%2B%22%7D"])
def test_encoded_paths_and_params_stay_enforced(world: World, path: str) -> None:
    headers = {"Authorization": basic(world.tenants["alpha"])}
    status, _, body = raw_request(world.gateway, "GET", path, headers)
    assert status in (200, 400, 404), body[:300]
    assert not [m for m in forbidden("alpha") if m in body], body[:500]


def test_parameter_smuggling_is_refused(world: World) -> None:
    other = '{cf_space_guid=~".+"}'
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/api/v1/query?query=up&query=" + other, {}),
        ("POST", "/api/v1/query?query=up", {"data": {"query": other}}),
        ("POST", "/api/v1/query", {"files": {"query": (None, other)}}),
        ("POST", "/api/v1/query", {"json": {"query": other}}),
        ("POST", "/api/v1/query", {"data": "query=" + other, "headers": {"Content-Type": "text/plain"}}),
        ("GET", "/api/v1/query_range?query=up&start=0&start=1&end=2&step=1", {}),
        ("GET", "/api/v1/query", {"params": {"query": "up\x00" + other}}),
    ]
    for method, path, kw in cases:
        resp = gw(world, "alpha", method, path, **kw)
        assert resp.status_code == 400, (path, kw, resp.text[:200])
        assert resp.json()["status"] == "error"


def test_chunked_and_compressed_bodies_stay_enforced(world: World) -> None:
    headers = {"Authorization": basic(world.tenants["alpha"]), "Content-Type": "application/x-www-form-urlencoded"}
    form = b"query=%7Bcf_space_guid%3D~%22.%2B%22%7D"
    chunked = hex(len(form))[2:].encode() + b"\r\n" + form + b"\r\n0\r\n\r\n"
    parts = urlsplit(world.gateway)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        conn.putrequest("POST", "/api/v1/query", skip_accept_encoding=True)
        for k, v in {**headers, "Transfer-Encoding": "chunked"}.items():
            conn.putheader(k, v)
        conn.endheaders(chunked)
        answer = conn.getresponse()
        status, body = answer.status, answer.read().decode()
    finally:
        conn.close()
    assert status in (200, 400), body[:300]
    assert not [m for m in forbidden("alpha") if m in body]
    resp = gw(world, "alpha", "POST", "/api/v1/query", data=gzip.compress(form),
              headers={"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"})
    assert_isolated("alpha", resp)


def test_client_tenancy_and_forwarding_headers_are_ignored(world: World) -> None:
    tricks = {"X-Scope-OrgID": ORG2, "X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": "prometheus",
              "X-Forwarded-Prefix": "/api/v1/status", "X-Original-URL": "/api/v1/status/config",
              "X-Rewrite-URL": "/api/v1/status/config", "X-HTTP-Method-Override": "DELETE",
              "X-Prometheus-Remote-Read-Version": "1", "Forwarded": "for=127.0.0.1;host=prometheus"}
    resp = gw(world, "alpha", "GET", "/api/v1/query", params={"query": "up"}, headers=tricks)
    assert services_in(resp) == own_guids("alpha")


def test_no_cross_origin_reads(world: World) -> None:
    """No CORS: a page on another origin cannot read a tenant's answers with the browser's cached password."""
    for method in ("GET", "OPTIONS"):
        resp = gw(world, "alpha", method, "/api/v1/query", params={"query": "up"},
                  headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
        assert not any(h.lower().startswith("access-control-allow") for h in resp.headers), resp.headers


# --- 5. credential tricks ---------------------------------------------------------------


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def _credential_tricks(world: World) -> dict[str, str]:
    a, b = world.tenants["alpha"], world.tenants["bravo"]
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in a.password)
    return {
        "other user, own password": "Basic " + _b64(f"{b.username}:{a.password}"),
        "own user, other password": "Basic " + _b64(f"{a.username}:{b.password}"),
        "own user, guessed password": "Basic " + _b64(f"{a.username}:{GUESSED_SECRET}"),
        "empty password": "Basic " + _b64(f"{a.username}:"),
        "empty username": "Basic " + _b64(f":{a.password}"),
        "no colon": "Basic " + _b64(a.username),
        "username as bearer": "Bearer " + a.username,
        "user:pass as bearer": "Bearer " + f"{a.username}:{a.password}",
        "base64 basic as bearer": "Bearer " + _b64(f"{a.username}:{a.password}"),
        "password hash as bearer": "Bearer " + hashlib.sha256(a.password.encode()).hexdigest(),
        "password hash as password": "Basic " + _b64(f"{a.username}:" + hashlib.sha256(a.password.encode()).hexdigest()),
        "truncated password": "Basic " + _b64(f"{a.username}:{a.password[:-1]}"),
        "password prefix": "Basic " + _b64(f"{a.username}:{a.password[:8]}"),
        "extra character": "Basic " + _b64(f"{a.username}:{a.password}x"),
        "trailing space in password": "Basic " + _b64(f"{a.username}:{a.password} "),
        "trailing space in username": "Basic " + _b64(f"{a.username} :{a.password}"),
        "upper-case username": "Basic " + _b64(f"{a.username.upper()}:{a.password}"),
        "fullwidth (NFKC) password": "Basic " + _b64(f"{a.username}:{fullwidth}"),
        "fullwidth (NFKC) username": "Basic " + _b64("ｔｍ" + a.username[2:] + ":" + a.password),
        "latin-1 bytes": "Basic " + _b64(f"{a.username}:{a.password}".encode() + b"\xe9"),
        "SQL injection username": "Basic " + _b64(f"' OR '1'='1' -- :{GUESSED_SECRET}"),
        "LIKE wildcard username": "Basic " + _b64(f"tm-%:{a.password}"),
        "very long": "Basic " + _b64("u" * 1000 + ":" + GUESSED_SECRET * 150),
        "very long bearer": "Bearer " + GUESSED_SECRET * 250,
        "base64 without padding": "Basic " + _b64(f"{a.username}:{a.password}x").rstrip("="),
        "junk after credentials": "Basic " + _b64(f"{a.username}:{a.password}") + " junk",
        "digest scheme": 'Digest username="' + a.username + '"',
        "two schemes": basic(a) + ", " + basic(b),
        "scheme only": "Basic",
        "invalid base64": "Basic !!!!",
    }


def test_credential_tricks_are_refused(world: World) -> None:
    answers = {}
    for name, header in _credential_tricks(world).items():
        api = requests.get(world.gateway + "/api/v1/query", params={"query": "up"},
                           headers={"Authorization": header}, timeout=30)
        ui = requests.get(world.gateway + "/ui/session", headers={"Authorization": header}, timeout=30)
        answers[name] = (api.status_code, "WWW-Authenticate" in api.headers, api.json()["status"], ui.status_code)
    assert {k: v for k, v in answers.items() if v != (401, True, "error", 401)} == {}


def test_nul_in_the_username_is_a_plain_401(world: World) -> None:
    """A NUL byte in the Basic username must be refused like any wrong username, not break the lookup
    (on PostgreSQL it once reached the SQL and came back as a 503 'credential store unavailable')."""
    a = world.tenants["alpha"]
    for user in (f"{a.username}\x00", "\x00", f"tm-\x00{GUESSED_SECRET}"):
        header = "Basic " + _b64(f"{user}:{a.password}")
        api = requests.get(world.gateway + "/api/v1/query", params={"query": "up"},
                           headers={"Authorization": header}, timeout=30)
        ui = requests.get(world.gateway + "/ui/session", headers={"Authorization": header}, timeout=30)
        assert (api.status_code, "WWW-Authenticate" in api.headers, ui.status_code) == (401, True, 401)


def test_accepted_credential_forms_are_exactly_the_documented_ones(world: World) -> None:
    """So the refusals above are not vacuous: Basic (any case) and the password as Bearer work."""
    a = world.tenants["alpha"]
    for header in (basic(a), "basic " + _b64(f"{a.username}:{a.password}"), "Bearer " + a.password):
        resp = requests.get(world.gateway + "/api/v1/query", params={"query": "up"},
                            headers={"Authorization": header}, timeout=30)
        assert services_in(resp) == own_guids("alpha")


def test_unauthenticated_requests_get_nothing(world: World) -> None:
    for path in ("/api/v1/query?query=up", "/api/v1/series?match[]=up", "/api/v1/targets", "/api/v1/metadata",
                 "/federate?match[]=up", "/api/v1/label/__name__/values", "/ui/", "/ui/session", "/ui/dashboards/"):
        for method in ("GET", "HEAD", "OPTIONS", "POST"):
            resp = requests.request(method, world.gateway + path, timeout=30)
            assert resp.status_code in (401, 405), (method, path, resp.status_code)
            assert not [m for m in forbidden("alpha") | forbidden("bravo") if m in resp.text]


# --- 6. revocation and rescoping ----------------------------------------------------------


def _statuses(world: World, creds: Creds, n: int = 8) -> list[int]:
    # fresh connections, so requests spread over the gateway's workers
    return [requests.get(world.gateway + "/api/v1/query", params={"query": "up"}, auth=creds.auth,
                         timeout=30, headers={"Connection": "close"}).status_code for _ in range(n)]


def test_unbind_revokes_within_a_second(world: World) -> None:
    creds = world.bind(world.tenants["alpha"].instance_id, "space")
    assert _statuses(world, creds) == [200] * 8  # warm every worker's cache
    resp = world.osb("DELETE", f"/v2/service_instances/{creds.instance_id}/service_bindings/{creds.binding_id}",
                     params={"service_id": world.service_id, "plan_id": creds.plan_id})
    assert resp.status_code == 200, resp.text
    time.sleep(1.05)
    assert _statuses(world, creds) == [401] * 8
    assert _statuses(world, world.tenants["alpha"], 2) == [200, 200]  # the instance's other key still works


def test_deprovision_revokes_every_binding_within_a_second(world: World) -> None:
    first = world.provision_and_bind("space", ORG2, BRAVO.labels[L.CF_SPACE_GUID])
    second = world.bind(first.instance_id, "space")
    assert _statuses(world, first, 4) + _statuses(world, second, 4) == [200] * 8
    # no unbind first: deprovisioning alone must revoke every binding of the instance
    resp = world.osb("DELETE", f"/v2/service_instances/{first.instance_id}",
                     params={"service_id": world.service_id, "plan_id": first.plan_id})
    assert resp.status_code == 200, resp.text
    time.sleep(1.05)
    assert _statuses(world, first, 4) + _statuses(world, second, 4) == [401] * 8


def test_plan_downgrade_narrows_existing_credentials_within_a_second(world: World) -> None:
    creds = world.provision_and_bind("org", ORG1, ALPHA.labels[L.CF_SPACE_GUID])
    for _ in range(4):
        assert services_in(query(world, "alpha", "up")) == own_guids("alpha")  # unrelated tenant unchanged
        resp = requests.get(world.gateway + "/api/v1/query", params={"query": "up"}, auth=creds.auth, timeout=30)
        assert services_in(resp) == own_guids("org1")
    resp = world.osb("PATCH", f"/v2/service_instances/{creds.instance_id}", json={
        "service_id": world.service_id, "plan_id": world.plans["space"],
        "previous_values": {"plan_id": world.plans["org"]}})
    assert resp.status_code == 200, resp.text
    time.sleep(1.05)
    for _ in range(8):
        resp = requests.get(world.gateway + "/api/v1/query", params={"query": "up"}, auth=creds.auth, timeout=30,
                            headers={"Connection": "close"})
        assert services_in(resp) == own_guids("alpha")


def test_tenant_supplied_parameters_cannot_choose_the_scope(world: World) -> None:
    """`cf create-service/bind-service/update-service -c JSON` is the one broker input a tenant writes."""
    widen = {"scope": "org", "plan": "org", "organization_guid": ORG2, "space_guid": BRAVO.labels[L.CF_SPACE_GUID],
             "cf_space_guid": BRAVO.labels[L.CF_SPACE_GUID], "label": "cf_organization_guid"}
    creds = world.tenants["alpha"]
    iid = "5ec0ffee-0000-4000-8000-000000000001"
    context = {"platform": "cloudfoundry", "organization_guid": ORG1, "space_guid": ALPHA.labels[L.CF_SPACE_GUID]}
    resp = world.osb("PUT", f"/v2/service_instances/{iid}", json={
        "service_id": world.service_id, "plan_id": world.plans["space"], "organization_guid": ORG1,
        "space_guid": ALPHA.labels[L.CF_SPACE_GUID], "context": context, "parameters": widen})
    assert resp.status_code in (400, 422), resp.text
    assert world.osb("GET", f"/v2/service_instances/{iid}").status_code in (404, 410)
    resp = world.osb("PUT", f"/v2/service_instances/{creds.instance_id}/service_bindings/5ec0ffee-b1d0-4000-8000-0000000001",
                     json={"service_id": world.service_id, "plan_id": creds.plan_id, "bind_resource": {},
                           "parameters": widen})
    assert resp.status_code in (400, 422), resp.text
    resp = world.osb("PATCH", f"/v2/service_instances/{creds.instance_id}", json={
        "service_id": world.service_id, "plan_id": creds.plan_id, "parameters": widen})
    assert resp.status_code in (400, 422), resp.text
    time.sleep(1.05)
    assert services_in(query(world, "alpha", "up")) == own_guids("alpha")


# --- 7. hostile query shapes (crash, CPU) ----------------------------------------------------


def test_bounded_query_shapes_are_refused_quickly(world: World) -> None:
    for promql in ("up" + " + up" * 300, "(" * 100 + "up" + ")" * 100, "-" * 300 + "up", "up" + " " * 17000):
        began = time.monotonic()
        resp = query(world, "alpha", promql, "POST")
        assert resp.status_code in (400, 422), resp.text[:200]
        assert time.monotonic() - began < 2


# (text before, text after) the operators: ways to hide code from a bound counted on the text.
HIDERS = [
    pytest.param("up #\r", "", id="cr-ends-comment"),
    pytest.param('label_join(up, "x", `\n"`)', ' + label_join(up, "y", "z")', id="dq-in-raw-string-with-newline"),
    pytest.param("label_join(up, \"x\", '\t\"')", ' + label_join(up, "y", "z")', id="dq-in-sq-string-with-tab"),
    pytest.param('label_join(up, "x", "\t\'")', " + label_join(up, 'y', 'z')", id="sq-in-dq-string-with-tab"),
]


@pytest.mark.parametrize(("before", "after"), HIDERS)
def test_nothing_hides_operators_from_the_query_bounds(world: World, before: str, after: str) -> None:
    """promql-parser ends a comment at "\\r" as well as "\\n", and reads strings with its own lexer:
    a bound counted on text where something else was taken for a comment or a string is no bound."""
    resp = query(world, "alpha", before + " + up" * 300 + after, "POST")
    assert resp.status_code == 400, resp.text[:200]


@pytest.mark.parametrize(("before", "after"), HIDERS[:2])
def test_deep_query_behind_a_hider_does_not_kill_a_worker(world: World, before: str, after: str) -> None:
    """10 kB in one POST reaching promql-parser unbounded segfaults the gunicorn worker, killing
    every request in flight on it, whichever tenant had sent them."""
    try:
        resp = query(world, "alpha", before + "+1" * 5000 + after, "POST")
    except requests.ConnectionError:
        pytest.fail("the gateway closed the connection without answering: its worker died")
    finally:
        deadline = time.monotonic() + 30  # leave a serving gateway to the next tests
        while time.monotonic() < deadline:
            try:
                if requests.get(world.gateway + "/healthz", timeout=5).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
    assert resp.status_code == 400, resp.text[:200]


# --- 8. what errors, public endpoints and the tenant page reveal ------------------------------

LEAKY_ERROR_TEXT = ("Traceback", "File \"/", "sqlalchemy", "SELECT ", "psycopg", "sqlite", ".py", "werkzeug",
                    "promql_parser", "PanicException", "127.0.0.1:", "password_sha256", "secret_nonce")


def test_error_answers_reveal_no_internals(world: World) -> None:
    bad = [
        ("GET", "/api/v1/query", {"params": {"query": "sum("}}),
        ("GET", "/api/v1/query", {"params": {"query": "up @ -1"}}),
        ("GET", "/api/v1/query", {"params": {"query": "up #\r @ -1"}}),
        ("GET", "/api/v1/query", {"params": {"query": "up[99999999999999999999y]"}}),
        ("GET", "/api/v1/query", {"params": {"query": 'up{a=~"(("}'}}),
        ("GET", "/api/v1/query", {"params": {"query": "up", "time": "yesterday"}}),
        ("GET", "/api/v1/query", {"params": {"query": "up", "timeout": "-1s"}}),
        ("GET", "/api/v1/query_range", {"params": {"query": "up", "start": "1", "end": "0", "step": "1"}}),
        ("GET", "/api/v1/query_range", {"params": {"query": "up", "start": "0", "end": "1e12", "step": "1"}}),
        ("GET", "/api/v1/series", {"params": {"match[]": "rate(up[1m])"}}),
        ("GET", "/api/v1/label/foo-bar/values", {}),
        ("GET", "/api/v1/labels", {"params": {"limit": "-1"}}),
        ("GET", "/api/v1/metadata", {"params": {"metric": "{}"}}),
        ("GET", "/api/v1/targets", {"params": {"state": "'"}}),
        ("POST", "/api/v1/query", {"data": {"query": "up", "pad": "x" * 2_000_000}}),
    ]
    for method, path, kw in bad:
        resp = gw(world, "alpha", method, path, **kw)
        assert 400 <= resp.status_code < 500, (path, kw.get("params"), resp.status_code, resp.text[:200])
        body = resp.json()
        assert body["status"] == "error" and body["errorType"] and body["error"]
        assert not [s for s in LEAKY_ERROR_TEXT if s in resp.text], resp.text[:300]


def test_public_metrics_endpoint_names_no_tenant(world: World) -> None:
    text = requests.get(world.gateway + "/metrics", timeout=30).text
    assert "tenant_metrics_gateway_requests_total" in text
    secrets = {v for s in SERVICES.values() for v in s.labels.values() if "-" in v and len(v) > 20}
    secrets |= {c.username for c in world.issued} | {c.password for c in world.issued}
    assert not [s for s in secrets if s in text]


def test_tenant_page_needs_credentials_and_shows_only_its_caller(world: World) -> None:
    resp = requests.get(world.gateway + "/ui/", timeout=30)
    assert resp.status_code == 401 and "WWW-Authenticate" in resp.headers
    session = gw(world, "alpha", "GET", "/ui/session")
    assert session.json() == {"username": world.tenants["alpha"].username, "scope": "space"}
    page = gw(world, "alpha", "GET", "/ui/")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    # HTML from an exporter's label value reaches the API as JSON data, never as a page
    probe = gw(world, "bravo", "GET", "/api/v1/query", params={"query": "xss_probe"})
    assert probe.headers["Content-Type"].startswith("application/json")


# --- 9. secrets at rest and in logs (the log test runs last: it reads every line written) --------


def _database_dump(world: World) -> bytes:
    """Everything the database holds: the SQLite files byte for byte, else every row of every table."""
    if world.database_url.startswith("sqlite:///"):
        path = Path(world.database_url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())
    engine = make_engine(world.database_url)
    try:
        with engine.connect() as conn:
            names = inspect(conn).get_table_names()
            rows = [repr(row) for name in names for row in conn.execute(text(f'SELECT * FROM "{name}"'))]
    finally:
        engine.dispose()
    assert any("bindings" == n for n in names)
    return "\n".join(rows).encode()


def test_database_holds_no_password(world: World) -> None:
    raw = _database_dump(world)
    assert world.issued
    for creds in world.issued:
        assert creds.username.encode() in raw or creds.instance_id.encode() in raw
        assert creds.password.encode() not in raw
        assert base64.b64encode(creds.password.encode()) not in raw
    assert BROKER_PASSWORD.encode() not in raw
    engine = make_engine(world.database_url)
    try:
        with engine.connect() as conn:
            rows = {r[0]: r[1] for r in conn.execute(text("SELECT username, password_sha256 FROM bindings"))}
    finally:
        engine.dispose()
    live = {c.username: c for c in world.issued if c.username in rows}
    assert live
    for username, creds in live.items():
        assert rows[username] == hashlib.sha256(creds.password.encode()).hexdigest()


def _log_text(world: World) -> str:
    logs = sorted(world.workdir.rglob("*.log"))
    assert any(p.name == "gateway.log" for p in logs) and any(p.name == "broker.log" for p in logs)
    return "\n".join(p.read_text(errors="replace") for p in logs)


def test_zz_logs_hold_no_secret(world: World) -> None:
    """Runs last: every attack above has been logged (at DEBUG) by now."""
    text = _log_text(world)
    assert "request" in text  # the gateway did log requests
    secrets = [c.password for c in world.issued] + [BROKER_PASSWORD, GUESSED_SECRET]
    secrets += [_b64(f"{c.username}:{c.password}") for c in world.issued]
    found = [s[:6] + "..." for s in secrets if s in text]
    assert found == []
    assert not re.search(r"(?i)\b(basic|bearer)\s+[A-Za-z0-9+/_=-]{16,}", text)
