"""Dashboard SSO end to end over real HTTP: the gateway, the fake login server/UAA/Cloud
Controller and a real database. Each security promise of the feature is a test here."""

from __future__ import annotations

import base64
import http.client
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from gateway.sso.cookies import CookieCodec
from tenant_metrics.core import db
from tenant_metrics.core.models import Binding, ServiceInstance
from tenant_metrics.fakes.tcpproxy import FaultProxy
from tenant_metrics.world import add_tenant, free_port, serve_wsgi
from tests.gateway.sso_support import (
    CLIENT_SECRET,
    SESSION_SECRET,
    TIMEOUT,
    SsoWorld,
    log_in_at_uaa,
    make_fake,
    sign_in,
    start,
    tenants,
)
from tests.gateway.support import RecordingUpstream


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SsoWorld]:
    url = f"sqlite:///{tmp_path_factory.mktemp('sso') / 'sso.sqlite3'}"
    db.upgrade(url)
    space_tenant, org_tenant = tenants(url)
    port = free_port()
    fake = make_fake(space_tenant, org_tenant, f"http://127.0.0.1:{port}/ui/sso/callback")
    upstream = RecordingUpstream()
    with serve_wsgi(upstream) as upstream_url:
        w = SsoWorld(fake, space_tenant, org_tenant, url, upstream_url, port)
        w.upstream = upstream  # type: ignore[attr-defined]
        yield w
    fake.stop()


@pytest.fixture(scope="module")
def gateway(world: SsoWorld) -> Iterator[str]:
    with world.gateway(port=world.public_port) as url:
        yield url


@pytest.fixture
def upstream(world: SsoWorld) -> RecordingUpstream:
    rec: RecordingUpstream = world.upstream  # type: ignore[attr-defined]
    rec.requests.clear()
    return rec


def _cookie_header(resp: requests.Response, name: str) -> str:
    found = [v for k, v in resp.raw.headers.items() if k.lower() == "set-cookie" and v.startswith(name + "=")]
    assert len(found) == 1, resp.raw.headers
    return found[0]


def _signed_in(world: SsoWorld, gateway: str, user: str = "dev", instance: str | None = None) -> requests.Session:
    browser = requests.Session()
    resp = sign_in(browser, gateway, instance or world.space_tenant.instance_id, user)
    assert resp.status_code == 303 and resp.headers["Location"] == "/ui/", resp.text
    return browser


def test_a_space_developer_signs_in_and_sees_exactly_what_a_binding_sees(
        world: SsoWorld, gateway: str, upstream: RecordingUpstream) -> None:
    browser = requests.Session()
    authorize = start(browser, gateway, world.space_tenant.instance_id)
    parts = urlsplit(authorize)
    # To the discovered login server (links.login), never anywhere else.
    assert authorize.startswith(world.fake.login_url + "/oauth/authorize?")
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert q["scope"] == "openid cloud_controller_service_permissions.read"
    assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43
    assert q["redirect_uri"] == f"{gateway}/ui/sso/callback" and len(q["state"]) >= 32
    callback = log_in_at_uaa(browser, authorize, "dev")
    resp = browser.get(callback, allow_redirects=False, timeout=TIMEOUT)
    assert resp.status_code == 303 and resp.headers["Location"] == "/ui/"
    assert "path=/;" in _cookie_header(resp, "tm_sso_login").lower() + ";"  # cleared where it was set
    cookie = _cookie_header(resp, "tm_session").lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    assert "secure" not in cookie  # plain-HTTP localhost only; https gets Secure and __Host-
    max_age = int(cookie.split("max-age=")[1].split(";")[0])
    assert 0 < max_age <= 8 * 3600
    # The page and the API accept the session, with no Authorization header.
    page = browser.get(f"{gateway}/ui/", timeout=TIMEOUT)
    assert page.status_code == 200 and "Metrics for your backing services" in page.text
    who = browser.get(f"{gateway}/ui/session", timeout=TIMEOUT).json()
    assert who["username"] == "dev" and who["scope"] == "space"
    assert who["sso"]["instance"] == world.space_tenant.instance_id and who["sso"]["recheck_seconds"] == 300
    api = browser.get(f"{gateway}/api/v1/query", params={"query": "up"}, timeout=TIMEOUT)
    assert api.status_code == 200, api.text
    assert upstream.last().get("query") == ['up{cf_space_guid="space-a"}']
    # One user's answer: never stored by a shared cache.
    assert api.headers["Cache-Control"] == "private, no-store" and "Cookie" in api.headers["Vary"]
    # ... exactly what the instance's own service key is rewritten to.
    keyed = requests.get(f"{gateway}/api/v1/query", params={"query": "up"}, auth=world.space_tenant.auth,
                         timeout=TIMEOUT)
    assert keyed.status_code == 200 and upstream.last().get("query") == ['up{cf_space_guid="space-a"}']


@pytest.mark.parametrize("user", ["auditor", "orgmanager"])
def test_readers_of_the_space_are_let_in(world: SsoWorld, gateway: str, user: str) -> None:
    browser = _signed_in(world, gateway, user)
    assert browser.get(f"{gateway}/ui/session", timeout=TIMEOUT).json()["username"] == user


def test_an_org_plan_session_sees_the_whole_org(world: SsoWorld, gateway: str, upstream: RecordingUpstream) -> None:
    browser = _signed_in(world, gateway, "elsewhere", world.org_tenant.instance_id)
    assert browser.get(f"{gateway}/api/v1/query", params={"query": "up"}, timeout=TIMEOUT).status_code == 200
    assert upstream.last().get("query") == ['up{cf_organization_guid="org-2"}']


@pytest.mark.parametrize("user", ["nobody", "elsewhere", "orgauditor"])
def test_a_user_without_a_role_in_the_space_gets_403_and_no_session(world: SsoWorld, gateway: str, user: str) -> None:
    browser = requests.Session()
    resp = sign_in(browser, gateway, world.space_tenant.instance_id, user)
    assert resp.status_code == 403
    assert "No access to this service instance" in resp.text and user in resp.text
    assert not any(c.name.endswith("tm_session") for c in browser.cookies)
    assert browser.get(f"{gateway}/api/v1/query", params={"query": "up"}, timeout=TIMEOUT).status_code == 401


def test_state_must_be_present_unchanged_and_fresh(world: SsoWorld, gateway: str) -> None:
    browser = requests.Session()
    callback = log_in_at_uaa(browser, start(browser, gateway, world.space_tenant.instance_id), "dev")
    parts = urlsplit(callback)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    base = f"{gateway}{parts.path}"
    for params in ({"code": q["code"]}, {"code": q["code"], "state": q["state"][:-1] + "x"},
                   {"code": q["code"], "state": ""}):
        login_cookie = browser.cookies.get("tm_sso_login")
        resp = browser.get(base, params=params, allow_redirects=False, timeout=TIMEOUT)
        assert resp.status_code == 400 and "Sign-in could not be completed" in resp.text, params
        assert "tm_session" not in resp.headers.get("Set-Cookie", "").split("=")[0]
        browser.cookies.set("tm_sso_login", login_cookie, path="/")  # the refusal cleared it
    # The genuine answer still works once; replaying it is refused.
    ok = browser.get(callback, allow_redirects=False, timeout=TIMEOUT)
    assert ok.status_code == 303
    browser.cookies.set("tm_sso_login", login_cookie, path="/")
    replay = browser.get(callback, allow_redirects=False, timeout=TIMEOUT)
    assert replay.status_code == 400 and "already been used" in replay.text


def test_a_callback_without_the_browsers_login_cookie_is_refused(world: SsoWorld, gateway: str) -> None:
    victim = requests.Session()
    callback = log_in_at_uaa(victim, start(victim, gateway, world.space_tenant.instance_id), "dev")
    attacker = requests.Session()  # login CSRF: another browser presents the answer
    resp = attacker.get(callback, allow_redirects=False, timeout=TIMEOUT)
    assert resp.status_code == 400 and not any(c.name.endswith("tm_session") for c in attacker.cookies)


def test_a_code_used_twice_is_refused_even_by_another_gateway_instance(world: SsoWorld, gateway: str) -> None:
    browser = requests.Session()
    callback = log_in_at_uaa(browser, start(browser, gateway, world.space_tenant.instance_id), "dev")
    login_cookie = browser.cookies.get("tm_sso_login")
    assert browser.get(callback, allow_redirects=False, timeout=TIMEOUT).status_code == 303
    # Another instance has not seen this state: UAA's single-use code is what refuses it.
    with world.gateway() as other:
        again = requests.Session()
        again.cookies.set("tm_sso_login", login_cookie, path="/")
        path = urlsplit(callback)
        resp = again.get(f"{other}{path.path}?{path.query}", allow_redirects=False, timeout=TIMEOUT)
    assert resp.status_code == 400 and "did not accept" in resp.text


def test_a_forged_or_changed_session_cookie_gets_401(world: SsoWorld, gateway: str) -> None:
    browser = _signed_in(world, gateway)
    good = browser.cookies.get("tm_session")
    assert good
    for bad in (good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1], "forged", good[5:]):
        other = requests.Session()
        other.cookies.set("tm_session", bad)
        api = other.get(f"{gateway}/api/v1/query", params={"query": "up"}, timeout=TIMEOUT)
        assert api.status_code == 401 and api.json()["errorType"] == "unauthorized"
        # No Basic challenge: a browser would prompt for a password over the page.
        assert not api.headers["WWW-Authenticate"].lower().startswith("basic")
        other.cookies.set("tm_session", bad)
        page = other.get(f"{gateway}/ui/", allow_redirects=False, timeout=TIMEOUT)
        assert page.status_code == 401 and "Sign in again" in page.text
        assert not page.headers["WWW-Authenticate"].lower().startswith("basic")
        assert "max-age=0" in _cookie_header(page, "tm_session").lower()  # dropped, not kept
    # A cookie sealed under another SESSION_SECRET (another foundation) is a forgery here.
    codec = CookieCodec(("another-secret-0123456789abcdefghijk",), 600)
    session = CookieCodec((SESSION_SECRET,), 600).open_session(good, time.time())
    other = requests.Session()
    other.cookies.set("tm_session", codec.seal_session(session))
    assert other.get(f"{gateway}/api/v1/query", params={"query": "up"}, timeout=TIMEOUT).status_code == 401


def test_cross_site_posts_cannot_use_the_session(world: SsoWorld, gateway: str) -> None:
    browser = _signed_in(world, gateway)
    url = f"{gateway}/api/v1/query"
    for origin in ("https://evil.example", "null", None):
        headers = {"Origin": origin} if origin else {}
        resp = browser.post(url, data={"query": "up"}, headers=headers, timeout=TIMEOUT)
        assert resp.status_code == 403 and resp.json()["errorType"] == "bad_data", origin
    same = browser.post(url, data={"query": "up"}, headers={"Origin": gateway}, timeout=TIMEOUT)
    assert same.status_code == 200, same.text
    # A service key is not a cookie: no Origin needed (promtool, Grafana).
    keyed = requests.post(url, data={"query": "up"}, auth=world.space_tenant.auth, timeout=TIMEOUT)
    assert keyed.status_code == 200


def test_sign_out_clears_the_session_and_links_to_the_login_servers_logout(world: SsoWorld, gateway: str) -> None:
    browser = _signed_in(world, gateway)
    refused = browser.post(f"{gateway}/ui/sso/logout", headers={"Origin": "https://evil.example"},
                           allow_redirects=False, timeout=TIMEOUT)
    assert refused.status_code == 403 and browser.cookies.get("tm_session")
    resp = browser.post(f"{gateway}/ui/sso/logout", headers={"Origin": gateway}, allow_redirects=False,
                        timeout=TIMEOUT)
    assert resp.status_code == 303 and resp.headers["Location"] == "/ui/sso/signed-out"
    assert "max-age=0" in _cookie_header(resp, "tm_session").lower()
    assert browser.cookies.get("tm_session") is None
    page = browser.get(f"{gateway}/ui/sso/signed-out", timeout=TIMEOUT)
    assert page.status_code == 200 and "Signed out" in page.text
    assert f'href="{world.fake.login_url}/logout.do?' in page.text
    assert browser.get(f"{gateway}/api/v1/query", params={"query": "up"}, timeout=TIMEOUT).status_code == 401


@pytest.mark.parametrize("instance", ["https:%2F%2Fevil.example", "..%2F..%2Fapi", "%2F%2Fevil.example",
                                      "a" * 200, "evil.example%3F"])
def test_no_open_redirect_from_the_dashboard_paths(world: SsoWorld, gateway: str, instance: str) -> None:
    resp = requests.get(f"{gateway}/ui/instances/{instance}", allow_redirects=False, timeout=TIMEOUT)
    location = resp.headers.get("Location", "")
    assert not location or location.startswith((world.fake.login_url + "/oauth/authorize?", "/ui/")), location
    if resp.status_code in (301, 302, 303, 307, 308):
        q = parse_qs(urlsplit(location).query)
        assert q.get("redirect_uri") in (None, [f"{gateway}/ui/sso/callback"])


def test_callback_parameters_cannot_choose_where_to_go(world: SsoWorld, gateway: str) -> None:
    browser = requests.Session()
    callback = log_in_at_uaa(browser, start(browser, gateway, world.space_tenant.instance_id), "dev")
    resp = browser.get(callback + "&next=https://evil.example&redirect_uri=https://evil.example",
                       allow_redirects=False, timeout=TIMEOUT)
    assert resp.status_code == 303 and resp.headers["Location"] == "/ui/"


def test_secrets_tokens_and_codes_never_reach_the_logs(world: SsoWorld, gateway: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    browser = requests.Session()
    callback = log_in_at_uaa(browser, start(browser, gateway, world.space_tenant.instance_id), "dev")
    code = parse_qs(urlsplit(callback).query)["code"][0]
    browser.get(callback, allow_redirects=False, timeout=TIMEOUT)
    cookie = browser.cookies.get("tm_session")
    assert cookie
    token = CookieCodec((SESSION_SECRET,), 600).open_session(cookie, time.time()).token
    browser.get(f"{gateway}/api/v1/query", params={"query": "up"}, timeout=TIMEOUT)
    browser.get(callback, allow_redirects=False, timeout=TIMEOUT)  # a refused replay logs too
    # The gateway's own records (the test's HTTP client and the fakes log URLs with codes).
    ours = [r for r in caplog.records if r.name.split(".")[0] in ("gateway", "aiohttp", "root")]
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in ours)
    assert "dashboard sign-in" in text  # the logs were captured
    for secret in (token, code, CLIENT_SECRET, SESSION_SECRET, cookie):
        assert secret not in text


def test_service_keys_keep_working_and_the_page_offers_both(world: SsoWorld, gateway: str) -> None:
    resp = requests.get(f"{gateway}/ui/", auth=world.space_tenant.auth, timeout=TIMEOUT)
    assert resp.status_code == 200
    bare = requests.get(f"{gateway}/ui/", timeout=TIMEOUT)
    assert bare.status_code == 401 and "dashboard link" in bare.text and "cf service-key" in bare.text


def test_an_expired_session_signs_in_again(world: SsoWorld, gateway: str) -> None:
    browser = _signed_in(world, gateway)
    codec = CookieCodec((SESSION_SECRET,), 600)
    session = codec.open_session(browser.cookies["tm_session"], time.time())
    from dataclasses import replace

    expired = replace(session, expires_at=time.time() - 1)
    stale = requests.Session()
    stale.cookies.set("tm_session", codec.seal_session(expired))
    page = stale.get(f"{gateway}/ui/", allow_redirects=False, timeout=TIMEOUT)
    assert page.status_code == 303 and page.headers["Location"] == f"/ui/instances/{session.instance}"
    api = stale.get(f"{gateway}/api/v1/query", params={"query": "up"}, timeout=TIMEOUT)
    assert api.status_code == 401 and "expired" in api.json()["error"]


def test_access_is_rechecked_and_lost_within_the_interval(world: SsoWorld, gateway: str) -> None:
    registry = CollectorRegistry()
    browser = _signed_in(world, gateway, "auditor")
    with world.gateway(registry=registry, recheck_seconds=1.0) as quick:
        assert browser.get(f"{quick}/api/v1/query", params={"query": "up"}, timeout=TIMEOUT).status_code == 200
        time.sleep(1.2)
        # Still a reader: the recheck passes and the cookie is renewed with the new time.
        resp = browser.get(f"{quick}/api/v1/query", params={"query": "up"}, timeout=TIMEOUT)
        assert resp.status_code == 200 and "tm_session=" in resp.headers.get("Set-Cookie", "")
        world.fake.remove_role("auditor", "space-a", "space_auditor")
        try:
            time.sleep(1.2)
            lost = browser.get(f"{quick}/api/v1/query", params={"query": "up"}, timeout=TIMEOUT)
            assert lost.status_code == 403 and "no longer" in lost.json()["error"]
            assert browser.cookies.get("tm_session") is None  # cleared with the refusal
        finally:
            world.fake.add_space_role("auditor", "space-a", "space_auditor")
        assert registry.get_sample_value("tenant_metrics_gateway_sso_rechecks_total", {"result": "ok"}) == 1
        assert registry.get_sample_value("tenant_metrics_gateway_sso_rechecks_total", {"result": "forbidden"}) == 1


def test_a_revoked_token_ends_the_session_at_the_next_recheck(world: SsoWorld, gateway: str) -> None:
    browser = _signed_in(world, gateway, "orgmanager")
    with world.gateway(recheck_seconds=1.0) as quick:
        world.fake.revoke_user_tokens("orgmanager")
        time.sleep(1.2)
        resp = browser.get(f"{quick}/api/v1/query", params={"query": "up"}, timeout=TIMEOUT)
        assert resp.status_code == 401 and "sign in again" in resp.json()["error"]


def test_a_hung_cloud_controller_costs_seconds_and_sessions_ride_out_one_interval(
        world: SsoWorld, gateway: str) -> None:
    """Cloud Controller accepts connections and never answers (a partition): a recheck waits
    at most the HTTP timeout, the session is kept for one more interval, then refused with
    503 until Cloud Controller answers again; a new sign-in gets the 503 page, not a hang."""
    browser = _signed_in(world, gateway, "dev")
    signed_at = time.time()
    api_port = int(urlsplit(world.fake.url).port or 0)
    registry = CollectorRegistry()
    with FaultProxy("127.0.0.1", api_port) as proxy, \
            world.gateway(registry=registry, recheck_seconds=1.0, http_timeout_seconds=1.0,
                          cf_api_url=f"http://127.0.0.1:{proxy.port}") as hung:
        proxy.set_mode("blackhole")
        time.sleep(1.1)
        began = time.monotonic()
        kept = browser.get(f"{hung}/api/v1/query", params={"query": "up"}, timeout=TIMEOUT)
        assert kept.status_code == 200 and time.monotonic() - began < 3.0
        assert registry.get_sample_value("tenant_metrics_gateway_sso_rechecks_total", {"result": "unavailable"}) == 1
        time.sleep(max(0.0, signed_at + 2.1 - time.time()))
        began = time.monotonic()
        refused = browser.get(f"{hung}/api/v1/query", params={"query": "up"}, timeout=TIMEOUT)
        assert refused.status_code == 503 and time.monotonic() - began < 3.0
        assert browser.cookies.get("tm_session")  # not a reason to sign out
        began = time.monotonic()
        fresh = requests.get(f"{hung}/ui/instances/{world.space_tenant.instance_id}", allow_redirects=False,
                             timeout=TIMEOUT)
        assert fresh.status_code == 503 and "Temporarily unavailable" in fresh.text
        assert time.monotonic() - began < 3.0
        proxy.set_mode("pass")
        back = browser.get(f"{hung}/api/v1/query", params={"query": "up"}, timeout=TIMEOUT)
        assert back.status_code == 200 and "tm_session=" in back.headers.get("Set-Cookie", "")


def test_an_error_answer_needs_the_browsers_state_too(world: SsoWorld, gateway: str) -> None:
    """A forged `error` cannot cancel someone's sign-in or put its text on our page."""
    browser = requests.Session()
    callback = log_in_at_uaa(browser, start(browser, gateway, world.space_tenant.instance_id), "dev")
    state = parse_qs(urlsplit(callback).query)["state"][0]
    login_cookie = browser.cookies.get("tm_sso_login")
    forged = browser.get(f"{gateway}/ui/sso/callback", params={"error": "ATTACKER-TEXT", "state": "wrong"},
                         allow_redirects=False, timeout=TIMEOUT)
    assert forged.status_code == 400 and "does not belong" in forged.text and "ATTACKER-TEXT" not in forged.text
    browser.cookies.set("tm_sso_login", login_cookie, path="/")
    denied = browser.get(f"{gateway}/ui/sso/callback", params={"error": "access_denied", "state": state},
                         allow_redirects=False, timeout=TIMEOUT)
    assert denied.status_code == 400 and "access_denied" in denied.text


def test_a_non_ascii_origin_is_refused_not_a_500(world: SsoWorld, gateway: str) -> None:
    browser = _signed_in(world, gateway)
    cookie = f"tm_session={browser.cookies['tm_session']}"
    parts = urlsplit(gateway)
    for path, body in (("/ui/sso/logout", b""), ("/api/v1/query", b"query=up")):
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=TIMEOUT)
        try:
            conn.putrequest("POST", path)
            conn.putheader("Cookie", cookie)
            conn.putheader("Origin", b"https://a\xff.example")
            conn.putheader("Content-Type", "application/x-www-form-urlencoded")
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            text = resp.read().decode(errors="replace")
        finally:
            conn.close()
        assert resp.status == 403 and "Traceback" not in text, (path, resp.status, text[:200])


def test_a_broken_instance_row_gets_a_page_not_a_json_401(world: SsoWorld, gateway: str) -> None:
    broken = add_tenant(world.database_url, "space", "org-1", "", "broken")  # no space guid
    world.fake.add_instance(broken.instance_id, "broken", "space-a")
    browser = requests.Session()
    resp = sign_in(browser, gateway, broken.instance_id, "dev")
    assert resp.status_code == 404 and "Unknown service instance" in resp.text
    assert not any(c.name.endswith("tm_session") for c in browser.cookies)


def test_a_deprovision_or_plan_change_shows_within_seconds_not_at_the_recheck(
        world: SsoWorld, gateway: str, upstream: RecordingUpstream) -> None:
    extra = add_tenant(world.database_url, "space", "org-1", "space-a", "short-lived")
    world.fake.add_instance(extra.instance_id, "short-lived", "space-a")
    browser = _signed_in(world, gateway, "dev", extra.instance_id)
    with world.gateway(instance_ttl_seconds=0.3) as quick:
        url = f"{quick}/api/v1/query"
        assert browser.get(url, params={"query": "up"}, timeout=TIMEOUT).status_code == 200
        _set_instance(world.database_url, extra.instance_id, scope="org")  # cf update-service -p org
        time.sleep(0.4)
        assert browser.get(url, params={"query": "up"}, timeout=TIMEOUT).status_code == 200
        assert upstream.last().get("query") == ['up{cf_organization_guid="org-1"}']
        _set_instance(world.database_url, extra.instance_id, delete=True)  # cf delete-service
        time.sleep(0.4)
        gone = browser.get(url, params={"query": "up"}, timeout=TIMEOUT)
        assert gone.status_code == 403 and "no longer exists" in gone.json()["error"]


def test_a_hung_cloud_controller_costs_each_new_sign_in_one_timeout_at_most(world: SsoWorld) -> None:
    api_port = int(urlsplit(world.fake.url).port or 0)
    with FaultProxy("127.0.0.1", api_port) as proxy, \
            world.gateway(http_timeout_seconds=1.0, cf_api_url=f"http://127.0.0.1:{proxy.port}") as hung:
        proxy.set_mode("blackhole")

        def open_dashboard(_: int) -> tuple[int, float]:
            began = time.monotonic()
            resp = requests.get(f"{hung}/ui/instances/{world.space_tenant.instance_id}", allow_redirects=False,
                                timeout=TIMEOUT)
            return resp.status_code, time.monotonic() - began

        with ThreadPoolExecutor(max_workers=10) as pool:
            answers = list(pool.map(open_dashboard, range(10)))
        assert all(status == 503 for status, _ in answers), answers
        assert max(took for _, took in answers) < 2.5, answers  # one shared 1 s discovery, not ten in a row
        began = time.monotonic()  # a failed discovery is not retried at once
        assert requests.get(f"{hung}/ui/instances/{world.space_tenant.instance_id}", allow_redirects=False,
                            timeout=TIMEOUT).status_code == 503
        assert time.monotonic() - began < 0.5


def test_two_authorization_headers_are_refused_on_the_page_too(world: SsoWorld, gateway: str) -> None:
    parts = urlsplit(gateway)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=TIMEOUT)
    try:
        conn.putrequest("GET", "/ui/")
        user, password = world.space_tenant.auth
        good = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        conn.putheader("Authorization", good)
        conn.putheader("Authorization", "Basic Zm9vOmJhcg==")
        conn.endheaders()
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    assert resp.status == 401


def _set_instance(database_url: str, instance_id: str, *, scope: str | None = None, delete: bool = False) -> None:
    engine = db.make_engine(database_url)
    try:
        with engine.begin() as conn:
            if delete:
                conn.execute(sa.delete(Binding).where(Binding.instance_id == instance_id))
                conn.execute(sa.delete(ServiceInstance).where(ServiceInstance.id == instance_id))
            else:
                conn.execute(sa.update(ServiceInstance).where(ServiceInstance.id == instance_id).values(scope=scope))
    finally:
        engine.dispose()
