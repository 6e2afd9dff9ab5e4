"""The isolation attacks again, with a dashboard SSO session as the only credential.

A session for an instance must see exactly what a binding of that instance sees, on every
endpoint: the attacks of test_isolation_attacks.py run here against the same real system
(tests/security/world.py: real Prometheus, broker and gunicorn gateway, SSO on against the
fake Cloud Controller/UAA) with each tenant's signed-in browser, which sends the session
cookie and no Authorization header; those of test_rules_alerts_attacks.py run against an
SSO gateway in front of the same hostile rules. Then what only sessions have: an
Authorization header always wins over the cookie (never a mix, never a fallback), and a
session is refused for anything but a same-origin GET/HEAD or POST.
"""

from __future__ import annotations

import gzip
import http.client
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.config import GatewaySettings
from gateway.sso.cookies import CookieCodec
from gateway.sso.settings import SsoSettings
from tenant_metrics.core import db
from tenant_metrics.core import labels as L
from tenant_metrics.fakes.cloudcontroller import FakeCloudController
from tenant_metrics.world import TenantCreds, add_tenant, free_port, serve_app, serve_wsgi
from tests.conftest import _drop_postgres_database, _new_postgres_database
from tests.gateway.sso_support import log_in_at_uaa, start
from tests.gateway.support import RecordingUpstream
from tests.security import test_rules_alerts_attacks as rules
from tests.security.test_isolation_attacks import (
    GUID,
    INTERNALS,
    MATCH_PATHS,
    MATCH_TRICKS,
    PROMQL_TRICKS,
    REFUSED_RAW,
    VISIBLE,
    _credential_tricks,
    _fill,
    assert_isolated,
    basic,
    forbidden,
    own_guids,
    raw_request,
    result,
    services_in,
)
from tests.security.world import (
    AMBER,
    BRAVO,
    DASHBOARD_CLIENT_SECRET,
    INJECTED,
    SERVICES,
    SESSION_SECRET,
    SSO_USERS,
    USER_PASSWORD,
    World,
    running_world,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SESSION_COOKIE = "tm_session"  # plain-HTTP localhost: no __Host- prefix


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          prometheus_binary: str) -> Iterator[World]:
    """The system under attack, once on each database (the session's instance lookup is SQL)."""
    workdir = tmp_path_factory.mktemp("session-security")
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


# --- requests made with the session cookie only -------------------------------------------------


def sgw(world: World, tenant: str, method: str, path: str, *, origin: str | None = "own",
        **kw: Any) -> requests.Response:
    """``tenant``'s signed-in browser; a request other than GET/HEAD carries our own Origin
    (as the tenant page's fetch() does) unless ``origin`` says otherwise (None: no Origin)."""
    headers = dict(kw.pop("headers", None) or {})
    if method not in ("GET", "HEAD") and origin is not None:
        headers["Origin"] = world.gateway if origin == "own" else origin
    resp = world.sessions[tenant].request(method, world.gateway + path, headers=headers, timeout=60, **kw)
    assert "Authorization" not in resp.request.headers  # the cookie is the only credential sent
    assert SESSION_COOKIE + "=" in resp.request.headers.get("Cookie", "")
    return resp


def squery(world: World, tenant: str, promql: str, method: str = "GET") -> requests.Response:
    if method == "GET":
        return sgw(world, tenant, "GET", "/api/v1/query", params={"query": promql})
    return sgw(world, tenant, "POST", "/api/v1/query", data={"query": promql})


def keyed(world: World, tenant: str, method: str, path: str, **kw: Any) -> requests.Response:
    """The same request with the instance's binding (Basic auth) and no cookie."""
    return requests.request(method, world.gateway + path, auth=world.tenants[tenant].auth, timeout=60, **kw)


def cookie_header(world: World, tenant: str) -> str:
    value = world.sessions[tenant].cookies.get(SESSION_COOKIE)
    assert value
    return f"{SESSION_COOKIE}={value}"


def _normalised(resp: requests.Response) -> Any:
    """The answer's data, with list order made irrelevant (series order is not an API promise)."""
    assert resp.status_code == 200, resp.text[:300]
    data = resp.json()["data"]
    if isinstance(data, dict) and isinstance(data.get("result"), list):
        return {**data, "result": sorted(json.dumps(r, sort_keys=True) for r in data["result"])}
    if isinstance(data, list):
        return sorted(json.dumps(r, sort_keys=True) for r in data)
    if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
        # /api/v1/metadata: metric -> entries, in the order Prometheus met the targets.
        return {k: sorted(json.dumps(e, sort_keys=True) for e in v) for k, v in data.items()}
    return data


# --- 0. a session is exactly a binding of its instance -----------------------------------------


@pytest.mark.parametrize("tenant", sorted(VISIBLE))
def test_baseline_each_session_sees_exactly_its_own_services(world: World, tenant: str) -> None:
    for promql in ("up", "requests_total", 'shared_metric{node=~".+"}'):
        assert services_in(squery(world, tenant, promql)) == own_guids(tenant)
        assert services_in(squery(world, tenant, promql, "POST")) == own_guids(tenant)
    # The cookie is what admits: the same request without it is refused.
    bare = requests.get(world.gateway + "/api/v1/query", params={"query": "up"}, timeout=30)
    assert bare.status_code == 401


@pytest.mark.parametrize("tenant", sorted(VISIBLE))
def test_a_session_answers_exactly_as_a_binding_of_its_instance(world: World, tenant: str) -> None:
    """Pinned times, so two answers from one Prometheus must be equal, endpoint by endpoint."""
    at = int(time.time()) - 5
    requests_to_compare: list[tuple[str, dict[str, Any]]] = [
        ("/api/v1/query", {"query": "up", "time": at}),
        ("/api/v1/query", {"query": '{__name__=~".+"}', "time": at}),
        ("/api/v1/query", {"query": 'count by (cf_space_guid, __name__) ({__name__=~".+"})', "time": at}),
        ("/api/v1/query", {"query": 'absent(up{cf_space_guid="' + BRAVO.labels[L.CF_SPACE_GUID] + '"})', "time": at}),
        ("/api/v1/query_range", {"query": "rate(requests_total[5s])", "start": at - 30, "end": at, "step": 5}),
        ("/api/v1/series", {"match[]": '{__name__=~".+"}', "start": at - 30, "end": at}),
        ("/api/v1/labels", {"start": at - 30, "end": at}),
        (f"/api/v1/label/{GUID}/values", {"start": at - 30, "end": at}),
        ("/api/v1/label/__name__/values", {"start": at - 30, "end": at}),
        ("/api/v1/label/instance/values", {"start": at - 30, "end": at}),
        ("/api/v1/metadata", {}),
        ("/api/v1/query_exemplars", {"query": "requests_total", "start": at - 30, "end": at}),
    ]
    for path, params in requests_to_compare:
        assert _normalised(sgw(world, tenant, "GET", path, params=params)) == \
            _normalised(keyed(world, tenant, "GET", path, params=params)), (path, params)
    targets = {}
    for name, resp in (("session", sgw(world, tenant, "GET", "/api/v1/targets")),
                       ("binding", keyed(world, tenant, "GET", "/api/v1/targets"))):
        data = resp.json()["data"]
        targets[name] = (sorted(json.dumps(t["labels"], sort_keys=True) for t in data["activeTargets"]),
                         data["droppedTargets"])
    assert targets["session"] == targets["binding"]
    who = sgw(world, tenant, "GET", "/ui/session").json()
    assert (who["username"], who["scope"]) == (SSO_USERS[tenant][0], "org" if tenant == "org1" else "space")
    assert who["sso"]["instance"] == world.tenants[tenant].instance_id


# --- 1. PromQL tricks -----------------------------------------------------------------------------


@pytest.mark.parametrize("template", PROMQL_TRICKS)
@pytest.mark.parametrize("tenant", ["alpha", "org1"])
def test_promql_tricks_never_cross_tenants(world: World, tenant: str, template: str) -> None:
    promql = _fill(template, tenant)
    for method in ("GET", "POST"):
        assert_isolated(tenant, squery(world, tenant, promql, method), sent=promql)


@pytest.mark.parametrize("template", PROMQL_TRICKS[:20] + ['{{__name__=~".+"}}[5s]', 'rate(requests_total[5s])'])
def test_promql_tricks_through_query_range_and_exemplars(world: World, template: str) -> None:
    promql = _fill(template, "alpha")
    now = time.time()
    resp = sgw(world, "alpha", "POST", "/api/v1/query_range",
               data={"query": promql, "start": now - 60, "end": now, "step": "5"})
    assert_isolated("alpha", resp, sent=promql)
    resp = sgw(world, "alpha", "GET", "/api/v1/query_range",
               params={"query": promql, "start": now - 60, "end": now, "step": "5"})
    assert_isolated("alpha", resp, sent=promql)
    resp = sgw(world, "alpha", "GET", "/api/v1/query_exemplars", params={"query": promql, "start": now - 60, "end": now})
    assert_isolated("alpha", resp, sent=promql)


# --- 2. oracles -------------------------------------------------------------------------------------


def test_other_tenants_services_are_indistinguishable_from_absent(world: World) -> None:
    for guid in (BRAVO.guid, AMBER.guid, "00000000-0000-4000-8000-000000000000"):
        absent = result(squery(world, "alpha", f'absent(up{{cf_service_instance_guid="{guid}"}})'))
        assert [r["value"][1] for r in absent] == ["1"]
        assert result(squery(world, "alpha", f'count(up{{cf_service_instance_guid="{guid}"}})')) == []
    assert [r["value"][1] for r in result(squery(world, "alpha", "absent(bravo_only_metric)"))] == ["1"]


@pytest.mark.parametrize("tenant", sorted(VISIBLE))
def test_aggregates_count_only_own_series(world: World, tenant: str) -> None:
    scope_label = L.CF_ORGANIZATION_GUID if tenant == "org1" else L.CF_SPACE_GUID
    scope_value = SERVICES["alpha"].labels[scope_label] if tenant == "org1" else SERVICES[tenant].labels[scope_label]
    direct = requests.get(world.prometheus + "/api/v1/query", timeout=30,
                          params={"query": f'count({{{scope_label}="{scope_value}"}})'}).json()
    expected = direct["data"]["result"][0]["value"][1]
    got = result(squery(world, tenant, 'count({__name__=~".+"})'))
    assert [r["value"][1] for r in got] == [expected]
    spaces = result(squery(world, tenant, 'count(count by (cf_space_guid) ({__name__=~".+"}))'))
    assert [r["value"][1] for r in spaces] == [str(len(VISIBLE[tenant]))]


# --- 3. metadata endpoints ----------------------------------------------------------------------


@pytest.mark.parametrize("path", MATCH_PATHS)
@pytest.mark.parametrize("tenant", ["alpha", "org1"])
def test_match_selector_tricks_never_cross_tenants(world: World, tenant: str, path: str) -> None:
    selectors = [_fill(t, tenant) for t in MATCH_TRICKS]
    for selector in selectors:
        assert_isolated(tenant, sgw(world, tenant, "GET", path, params={"match[]": selector}), sent=selector)
    assert_isolated(tenant, sgw(world, tenant, "GET", path, params=[("match[]", s) for s in selectors]),
                    sent="".join(selectors))
    if path.startswith("/api/v1/series") or path == "/api/v1/labels":
        resp = sgw(world, tenant, "POST", path + "?match[]=up", data={"match[]": selectors[1]})
        assert_isolated(tenant, resp, sent=selectors[1])


@pytest.mark.parametrize("tenant", sorted(VISIBLE))
def test_label_values_are_exactly_the_tenants_own(world: World, tenant: str) -> None:
    for label, want in ((GUID, own_guids(tenant)),
                        (L.CF_SPACE_GUID, {SERVICES[k].labels[L.CF_SPACE_GUID] for k in VISIBLE[tenant]}),
                        ("instance", {SERVICES[k].address for k in VISIBLE[tenant]})):
        values = set(sgw(world, tenant, "GET", f"/api/v1/label/{label}/values").json()["data"])
        if label == "instance":
            values = {v.split(":")[0] for v in values}
        assert values == want
    names = set(sgw(world, tenant, "GET", "/api/v1/label/__name__/values").json()["data"])
    assert {f"{k}_only_metric" for k in VISIBLE[tenant]} <= names
    assert not {f"{k}_only_metric" for k in SERVICES if k not in VISIBLE[tenant]} & names


@pytest.mark.parametrize("state", [None, "active", "dropped", "any"])
@pytest.mark.parametrize("tenant", sorted(VISIBLE))
def test_targets_are_only_the_tenants_own(world: World, tenant: str, state: str | None) -> None:
    resp = sgw(world, tenant, "GET", "/api/v1/targets", params={"state": state} if state else {})
    assert_isolated(tenant, resp)
    data = resp.json()["data"]
    assert data["droppedTargets"] == []
    want = set() if state == "dropped" else own_guids(tenant)
    assert {t["labels"][GUID] for t in data["activeTargets"]} == want
    assert all(not t.get("discoveredLabels") for t in data["activeTargets"])


@pytest.mark.parametrize("tenant", sorted(VISIBLE))
def test_metadata_lists_only_metric_names_the_tenant_has(world: World, tenant: str) -> None:
    names = set(sgw(world, tenant, "GET", "/api/v1/metadata").json()["data"])
    assert {f"{k}_only_metric" for k in VISIBLE[tenant]} <= names
    assert not {f"{k}_only_metric" for k in SERVICES if k not in VISIBLE[tenant]} & names
    other = "bravo" if tenant != "bravo" else "alpha"
    resp = sgw(world, tenant, "GET", "/api/v1/metadata", params={"metric": f"{other}_only_metric"})
    assert resp.json()["data"] == {}
    for params in ({}, {"metric": "shared_metric"}):
        helps = {m["help"] for m in sgw(world, tenant, "GET", "/api/v1/metadata", params=params)
                 .json()["data"].get("shared_metric", [])}
        assert helps == {f"help-from-{k}" for k in VISIBLE[tenant]}, helps


def test_a_service_cannot_inject_series_into_another_tenants_session(world: World) -> None:
    assert result(squery(world, "alpha", "injected_metric")) == []
    assert result(squery(world, "alpha", '{exported_cf_space_guid=~".+"}')) == []
    own = result(squery(world, "bravo", "injected_metric"))
    assert len(own) == 1
    assert own[0]["metric"][L.CF_SPACE_GUID] == BRAVO.labels[L.CF_SPACE_GUID]
    assert own[0]["metric"]["exported_" + L.CF_SERVICE_INSTANCE_GUID] == INJECTED[L.CF_SERVICE_INSTANCE_GUID]


def test_federate_with_a_session_is_the_tenants_own(world: World) -> None:
    for tenant in sorted(VISIBLE):
        resp = sgw(world, tenant, "GET", "/federate", params={"match[]": '{__name__=~".+"}'})
        assert resp.status_code == 200, resp.text[:300]
        assert_isolated(tenant, resp)
        assert {g for g in own_guids(tenant) if f'{GUID}="{g}"' in resp.text} == own_guids(tenant)


# --- 4. HTTP tricks -----------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), REFUSED_RAW)
def test_refused_and_tricky_paths(world: World, method: str, path: str) -> None:
    headers = {"Cookie": cookie_header(world, "alpha"), "Origin": world.gateway}
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
    status, _, body = raw_request(world.gateway, "GET", path, {"Cookie": cookie_header(world, "alpha")})
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
        resp = sgw(world, "alpha", method, path, **kw)
        assert resp.status_code == 400, (path, kw, resp.text[:200])
        assert resp.json()["status"] == "error"


def test_compressed_bodies_stay_enforced(world: World) -> None:
    form = b"query=%7Bcf_space_guid%3D~%22.%2B%22%7D"
    resp = sgw(world, "alpha", "POST", "/api/v1/query", data=gzip.compress(form),
               headers={"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"})
    assert_isolated("alpha", resp)


def test_client_tenancy_and_forwarding_headers_are_ignored(world: World) -> None:
    tricks = {"X-Scope-OrgID": BRAVO.labels[L.CF_ORGANIZATION_GUID], "X-Forwarded-For": "127.0.0.1",
              "X-Forwarded-Host": "prometheus", "X-Original-URL": "/api/v1/status/config",
              "X-HTTP-Method-Override": "DELETE", "Forwarded": "for=127.0.0.1;host=prometheus"}
    resp = sgw(world, "alpha", "GET", "/api/v1/query", params={"query": "up"}, headers=tricks)
    assert services_in(resp) == own_guids("alpha")


def test_no_cross_origin_reads_with_the_session(world: World) -> None:
    for method in ("GET", "OPTIONS"):
        resp = sgw(world, "alpha", method, "/api/v1/query", params={"query": "up"}, origin=None,
                   headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
        assert not any(h.lower().startswith("access-control-allow") for h in resp.headers), resp.headers
        assert not [m for m in forbidden("alpha") if m in resp.text]


# --- 5. what only sessions have: cross-site requests ---------------------------------------------

# Origins that are not GATEWAY_PUBLIC_URL's (None: no Origin header at all).
FOREIGN_ORIGINS: list[str | None] = [None, "https://evil.example", "null", "", "http://localhost:{port}",
                                     "http://127.0.0.1:{other}", "https://127.0.0.1:{port}", "http://127.0.0.1",
                                     "http://127.0.0.1:{port}.evil.example", "http://127.0.0.1:{port}/",
                                     "http://127.0.0.1:{port}, https://evil.example"]
POSTS: list[tuple[str, dict[str, Any]]] = [
    ("/api/v1/query", {"query": "up"}),
    ("/api/v1/query_range", {"query": "up", "start": "0", "end": "60", "step": "15"}),
    ("/api/v1/series", {"match[]": "up"}),
    ("/api/v1/labels", {"match[]": "up"}),
    ("/api/v1/query_exemplars", {"query": "up", "start": "0", "end": "60"}),
]


@pytest.mark.parametrize("template", FOREIGN_ORIGINS)
def test_a_session_post_without_our_origin_is_refused(world: World, template: str | None) -> None:
    port = world.gateway.rsplit(":", 1)[1]
    origin = None if template is None else template.format(port=port, other=int(port) + 1)
    for path, form in POSTS:
        resp = sgw(world, "alpha", "POST", path, data=form, origin=origin)
        assert resp.status_code == 403, (path, origin, resp.status_code, resp.text[:200])
        body = resp.json()
        assert body["status"] == "error" and body["errorType"] and "cross-site" in body["error"]
        assert not [m for m in forbidden("alpha") | own_guids("alpha") if m in resp.text]
    # Refusing a cross-site request is not a reason to end the session.
    assert services_in(squery(world, "alpha", "up")) == own_guids("alpha")


def test_a_same_origin_session_post_is_served_and_isolated(world: World) -> None:
    for tenant in sorted(VISIBLE):
        for path, form in POSTS:
            resp = sgw(world, tenant, "POST", path, data=form)
            assert resp.status_code == 200, (path, resp.text[:200])
            assert_isolated(tenant, resp)
        assert services_in(squery(world, tenant, "up", "POST")) == own_guids(tenant)
        # The origin check is on the scheme, host and port only, in any case, as browsers send it.
        resp = sgw(world, tenant, "POST", "/api/v1/query", data={"query": "up"}, origin=world.gateway.upper())
        assert services_in(resp) == own_guids(tenant)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_with_a_session_are_refused(world: World, method: str) -> None:
    for origin in (None, "own"):
        for path in ("/api/v1/query?query=up", "/api/v1/series?match[]=up", "/api/v1/admin/tsdb/delete_series?match[]=up"):
            resp = sgw(world, "alpha", method, path, origin=origin)
            assert resp.status_code in (403, 404, 405), (method, path, origin, resp.status_code)
            assert resp.json()["status"] == "error"


# --- 6. a header always wins over the cookie ------------------------------------------------------


@pytest.mark.parametrize(("cookie_of", "key_of"), [("alpha", "bravo"), ("bravo", "alpha"), ("alpha", "org1"),
                                                   ("org1", "bravo")])
def test_a_binding_header_beside_a_session_gets_the_bindings_view_only(world: World, cookie_of: str,
                                                                       key_of: str) -> None:
    """A session for one instance and a service key of another in one request: the key's view,
    exactly, never the union and never the session's."""
    creds = world.tenants[key_of]
    browser = world.sessions[cookie_of]
    headers_of = {"basic": {"Authorization": basic(creds)}, "bearer": {"Authorization": "Bearer " + creds.password}}
    for name, headers in headers_of.items():
        def get(path: str, **kw: Any) -> requests.Response:
            resp = browser.get(world.gateway + path, headers=headers, timeout=60, **kw)
            assert SESSION_COOKIE + "=" in resp.request.headers.get("Cookie", "")
            return resp

        for promql in ("up", '{__name__=~".+"}', 'count by (cf_service_instance_guid) (up)'):
            resp = get("/api/v1/query", params={"query": promql})
            assert services_in(resp) == own_guids(key_of), (name, promql)
            assert_isolated(key_of, resp, sent=promql)
        assert set(get(f"/api/v1/label/{GUID}/values").json()["data"]) == own_guids(key_of), name
        targets = get("/api/v1/targets").json()["data"]["activeTargets"]
        assert {t["labels"][GUID] for t in targets} == own_guids(key_of), name
        names = set(get("/api/v1/label/__name__/values").json()["data"])
        assert not {f"{k}_only_metric" for k in SERVICES if k not in VISIBLE[key_of]} & names, name
        who = get("/ui/session").json()
        assert who["username"] == creds.username and "sso" not in who, (name, who)
        # A POST with a key needs no Origin (promtool, Grafana): the cookie beside it changes nothing.
        posted = browser.post(world.gateway + "/api/v1/query", data={"query": "up"}, headers=headers, timeout=60)
        assert services_in(posted) == own_guids(key_of), name


def test_a_forged_authorization_header_beside_a_session_gets_401_not_the_cookie(world: World) -> None:
    browser = world.sessions["alpha"]
    tricks = {**_credential_tricks(world), "empty header": "",
              "bearer of the session cookie": "Bearer " + (browser.cookies.get(SESSION_COOKIE) or "")}
    answers = {}
    for name, header in tricks.items():
        api = browser.get(world.gateway + "/api/v1/query", params={"query": "up"},
                          headers={"Authorization": header}, timeout=30)
        assert SESSION_COOKIE + "=" in api.request.headers.get("Cookie", "")
        ui = browser.get(world.gateway + "/ui/session", headers={"Authorization": header}, timeout=30)
        leaked = [m for m in own_guids("alpha") | forbidden("alpha") if m in api.text or m in ui.text]
        answers[name] = (api.status_code, api.json()["status"], ui.status_code, leaked)
    # Headers requests will not send: written byte for byte.
    for header in (" ", "\t", "Basic", "Cookie " + cookie_header(world, "alpha")):
        for path in ("/api/v1/query?query=up", "/ui/session"):
            status, _, body = raw_request(world.gateway, "GET", path,
                                          {"Cookie": cookie_header(world, "alpha"), "Authorization": header})
            leaked = [m for m in own_guids("alpha") | forbidden("alpha") if m in body]
            answers[f"raw {header!r} {path}"] = (status, "error", 401, leaked)
    assert {k: v for k, v in answers.items() if v != (401, "error", 401, [])} == {}
    # The session itself was not spent by any of that.
    assert services_in(squery(world, "alpha", "up")) == own_guids("alpha")


def test_two_authorization_headers_beside_a_session_get_401(world: World) -> None:
    a = world.tenants["alpha"]
    for second in (basic(a), basic(world.tenants["bravo"])):
        conn_headers = [("Cookie", cookie_header(world, "alpha")), ("Authorization", basic(a)),
                        ("Authorization", second)]
        parts = urlsplit(world.gateway)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        try:
            conn.putrequest("GET", "/api/v1/query?query=up")
            for k, v in conn_headers:
                conn.putheader(k, v)
            conn.endheaders()
            answer = conn.getresponse()
            status, body = answer.status, answer.read().decode()
        finally:
            conn.close()
        assert status == 401, body[:300]
        assert not [m for m in own_guids("alpha") | forbidden("alpha") if m in body]


# --- 7. signing in: only a reader of the instance gets a session, scoped by the instance's plan ------


@pytest.mark.parametrize(("user_of", "instance_of"), [("alpha", "bravo"), ("bravo", "alpha"), ("bravo", "org1"),
                                                      ("org1", "bravo"), ("alpha", "org1")])
def test_a_user_gets_a_session_only_where_cloud_foundry_lets_them_read(world: World, user_of: str,
                                                                       instance_of: str) -> None:
    """alpha's Space Developer may read org1's instance (it lives in alpha's space): that session is
    the org plan's view, like any binding of it. Everywhere else: 403 and no session."""
    browser, answer = world.sign_in(SSO_USERS[user_of][0], world.tenants[instance_of].instance_id)
    if (user_of, instance_of) == ("alpha", "org1"):
        assert answer.status_code == 303
        resp = browser.get(world.gateway + "/api/v1/query", params={"query": "up"}, timeout=30)
        assert services_in(resp) == own_guids("org1")
        return
    assert answer.status_code == 403, answer.text[:300]
    assert SESSION_COOKIE not in [c.name for c in browser.cookies]
    assert not [m for m in own_guids(instance_of) if m in answer.text]
    assert browser.get(world.gateway + "/api/v1/query", params={"query": "up"}, timeout=30).status_code == 401


def test_an_org_manager_on_a_space_plan_instance_sees_only_that_space(world: World) -> None:
    """The role admits; the instance's plan, not the user's reach, sets what is seen."""
    browser, answer = world.sign_in(SSO_USERS["org1"][0], world.tenants["alpha"].instance_id)
    assert answer.status_code == 303
    for promql in ("up", '{__name__=~".+"}', f'up{{cf_space_guid="{AMBER.labels[L.CF_SPACE_GUID]}"}}'):
        resp = browser.get(world.gateway + "/api/v1/query", params={"query": promql}, timeout=30)
        assert_isolated("alpha", resp, sent=promql)
        assert services_in(resp) <= own_guids("alpha")
    assert browser.get(world.gateway + "/ui/session", timeout=30).json()["scope"] == "space"


def test_signing_out_ends_only_that_browsers_session(world: World) -> None:
    browser, answer = world.sign_in(SSO_USERS["alpha"][0], world.tenants["alpha"].instance_id)
    assert answer.status_code == 303
    cookie = browser.cookies.get(SESSION_COOKIE)
    refused = browser.post(world.gateway + "/ui/sso/logout", allow_redirects=False, timeout=30)
    assert refused.status_code == 403 and browser.cookies.get(SESSION_COOKIE) == cookie
    out = browser.post(world.gateway + "/ui/sso/logout", headers={"Origin": world.gateway}, allow_redirects=False,
                       timeout=30)
    assert out.status_code == 303 and browser.cookies.get(SESSION_COOKIE) is None
    assert browser.get(world.gateway + "/api/v1/query", params={"query": "up"}, timeout=30).status_code == 401
    # The other browser of the same user keeps its own session.
    assert services_in(squery(world, "alpha", "up")) == own_guids("alpha")


# --- 8. rules and alerts, with a session, in front of hostile rules ---------------------------------

RULES_USERS = {"alpha": ("rules-alpha", "space", rules.ALPHA), "org1": ("rules-org1", "org", rules.ORG_ONE),
               "bravo": ("rules-bravo", "space", rules.BRAVO)}


@pytest.fixture(scope="module")
def rules_attack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, requests.Session]]]:
    """test_rules_alerts_attacks.py's hostile upstream behind a gateway with SSO on; one
    signed-in browser per tenant."""
    url = f"sqlite:///{tmp_path_factory.mktemp('session-rules') / 'tm.sqlite3'}"
    db.upgrade(url)
    tenants: dict[str, TenantCreds] = {
        "alpha": add_tenant(url, "space", rules.ORG_ONE, rules.ALPHA),
        "org1": add_tenant(url, "org", rules.ORG_ONE, rules.AMBER),
        "bravo": add_tenant(url, "space", rules.ORG_TWO, rules.BRAVO),
    }
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    fake = FakeCloudController().start()
    try:
        fake.add_dashboard_client("rules-dashboard", DASHBOARD_CLIENT_SECRET, public + "/ui/sso/callback")
        for tenant, (user, kind, guid) in RULES_USERS.items():
            creds = tenants[tenant]
            fake.add_owner(creds.instance_id, tenant, creds.space, creds.space, creds.org, creds.org)
            fake.add_user(user, USER_PASSWORD)
            if kind == "space":
                fake.add_space_role(user, guid, "space_developer")
            else:
                fake.add_org_role(user, guid, "organization_manager")
        upstream = RecordingUpstream()
        upstream.rules = rules.HOSTILE
        with serve_wsgi(upstream) as upstream_url:
            sso = SsoSettings("rules-dashboard", DASHBOARD_CLIENT_SECRET, fake.url, public, (SESSION_SECRET,))
            settings = GatewaySettings(prometheus_urls=(upstream_url,), database_url=url, health_check_seconds=0.2,
                                       rate_limit_burst=100000, rate_limit_per_second=100000.0, sso=sso)
            with serve_app(create_app(settings, CollectorRegistry()), port=port) as gateway:
                browsers = {}
                for tenant, (user, _, _) in RULES_USERS.items():
                    browser = requests.Session()
                    browser.trust_env = False
                    callback = log_in_at_uaa(browser, start(browser, gateway, tenants[tenant].instance_id), user,
                                             USER_PASSWORD)
                    answer = browser.get(callback, allow_redirects=False, timeout=30)
                    assert answer.status_code == 303, answer.text[:300]
                    browsers[tenant] = browser
                yield gateway, browsers
    finally:
        fake.stop()


def _session_get(gateway: str, browser: requests.Session, path: str, params: list[tuple[str, str]]) -> dict[str, Any]:
    resp = browser.get(gateway + path, params=params, timeout=10)
    assert "Authorization" not in resp.request.headers
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    assert body["status"] == "success"
    return body


@pytest.mark.parametrize("tenant", sorted(rules.FORBIDDEN))
def test_no_probe_of_rules_or_alerts_shows_another_tenants_rules(rules_attack: tuple[str, dict[str, requests.Session]],
                                                                 tenant: str) -> None:
    gateway, browsers = rules_attack
    for probe in rules.PROBES:
        for path in ("/api/v1/rules", "/api/v1/alerts"):
            body = _session_get(gateway, browsers[tenant], path, probe)
            assert rules._leaks(body, tenant) == set(), (path, probe)


@pytest.mark.parametrize(("tenant", "probe"), rules.NOT_THEIRS)
def test_probing_a_rule_name_answers_as_for_a_name_that_does_not_exist(
        rules_attack: tuple[str, dict[str, requests.Session]], tenant: str, probe: str) -> None:
    gateway, browsers = rules_attack
    for extra in ([], [("type", "record")], [("exclude_alerts", "true")]):
        probed = _session_get(gateway, browsers[tenant], "/api/v1/rules", [("rule_name[]", probe), *extra])
        absent = _session_get(gateway, browsers[tenant], "/api/v1/rules", [("rule_name[]", "MadeUpRule"), *extra])
        assert probed == absent == {"status": "success", "data": {"groups": []}}


def test_each_session_sees_exactly_its_own_rules_and_alerts(rules_attack: tuple[str, dict[str, requests.Session]]) -> None:
    gateway, browsers = rules_attack
    seen = {t: rules._seen(_session_get(gateway, b, "/api/v1/rules", [])) for t, b in browsers.items()}
    assert seen == {
        "alpha": [("shared", "SharedRed", "firing", 300, [(rules.ALPHA, "firing")])],
        "org1": [("shared", "SharedRed", "firing", 300, [(rules.ALPHA, "firing"), (rules.AMBER, "pending")])],
        "bravo": [("shared", "SharedRed", "firing", 300, [(rules.BRAVO, "firing")]),
                  ("shared", "NoAudienceBravoOnly", "pending", 7777, [(rules.BRAVO, "pending")]),
                  ("bravo-team", "BravoSecretRule", "firing", 4242, [(rules.BRAVO, "firing")]),
                  ("bravo-team", "BravoStaticLabel", "inactive", 6464, [])],
    }
    alerts = {t: [(a["labels"]["cf_space_guid"], a["annotations"]["description"])
                  for a in _session_get(gateway, b, "/api/v1/alerts", [])["data"]["alerts"]]
              for t, b in browsers.items()}
    assert alerts == {
        "alpha": [(rules.ALPHA, "alpha-instance-note")],
        "org1": [(rules.ALPHA, "alpha-instance-note"), (rules.AMBER, "amber-instance-note")],
        "bravo": [(rules.BRAVO, "bravo-instance-note"), (rules.BRAVO, "bravo-pending-note"),
                  (rules.BRAVO, "bravo-own-note")],
    }


# --- 9. secrets in logs (runs last in this module: every attack above has been logged) --------------


def test_zz_logs_hold_no_session_secret(world: World) -> None:
    logs = sorted(world.workdir.rglob("*.log"))
    assert any(p.name == "gateway.log" for p in logs)
    text = "\n".join(p.read_text(errors="replace") for p in logs)
    assert "dashboard sign-in" in text  # the gateway did log the sign-ins
    codec = CookieCodec((SESSION_SECRET,), 600)
    secrets = [DASHBOARD_CLIENT_SECRET, SESSION_SECRET, USER_PASSWORD]
    for browser in world.sessions.values():
        cookie = browser.cookies.get(SESSION_COOKIE) or ""
        secrets += [cookie, codec.open_session(cookie, time.time()).token]
    found = [s[:6] + "..." for s in secrets if s and s in text]
    assert found == []
