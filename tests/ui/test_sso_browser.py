"""Dashboard SSO in a real headless Chromium: the dashboard link, the login server's form,
the tenant page signed in with Cloud Foundry, refusals, sign-out and lost access.

The world of tests/ui (a real Prometheus scraping the tenants' Aiven-like nodes) sits
behind a real gateway with SSO on; the fake Cloud Controller/UAA (its login server
included) knows tenant A's instance, its space and org, and the users below.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Response, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from gateway.app import create_app
from gateway.config import GatewaySettings
from gateway.sso.settings import SsoSettings
from tenant_metrics.fakes.cloudcontroller import FakeCloudController
from tenant_metrics.world import free_port, serve_app, wait_until
from tests.ui.conftest import Tenants
from tests.ui.test_browser import CHROMIUM, CHROMIUM_ARGS, _shot
from tests.ui.world import ORG_A, ORG_B, SPACE_A1, SPACE_B1, World, visible

pytestmark = pytest.mark.e2e

CLIENT_ID = "tenant-metrics-dashboard"
CLIENT_SECRET = "dashboard-client-secret-0123456789"
SESSION_SECRET = "session-secret-0123456789abcdefghijklmnop"
PASSWORD = "correct horse battery staple"
SESSION_COOKIE = "tm_session"
WAIT_MS = 20000  # one navigation or page load, sign-in redirects included
# user -> the role they hold (kind, guid, role), or None
USERS: dict[str, tuple[str, str, str] | None] = {
    "developer": ("space", SPACE_A1, "space_developer"),
    "auditor": ("space", SPACE_A1, "space_auditor"),
    "nobody": None,
    "elsewhere": ("space", SPACE_B1, "space_developer"),  # a role in tenant B's org only
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, as tests/ui/test_browser.py launches it."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's 'chromium' package (make deps)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def fake(tenants: Tenants) -> Iterator[FakeCloudController]:
    """Cloud Controller, UAA and the login server, knowing both tenants' instances and the users."""
    cc = FakeCloudController().start()
    try:
        cc.add_owner(tenants.a.instance_id, "metrics-a", SPACE_A1, "space-a1", ORG_A, "org-a")
        cc.add_owner(tenants.b.instance_id, "metrics-b", SPACE_B1, "space-b1", ORG_B, "org-b")
        for user, role in USERS.items():
            cc.add_user(user, PASSWORD)
            if role is not None:
                cc.add_space_role(user, role[1], role[2])
        yield cc
    finally:
        cc.stop()


@contextmanager
def _sso_gateway(database_url: str, world: World, fake: FakeCloudController,
                 recheck_seconds: float = 300.0) -> Iterator[str]:
    """The real gateway with SSO on, in front of the world's Prometheus; the fake's dashboard
    client is registered with this gateway's callback (its exact redirect_uri)."""
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    fake.add_dashboard_client(CLIENT_ID, CLIENT_SECRET, f"{public}/ui/sso/callback")
    settings = GatewaySettings(
        prometheus_urls=(world.prometheus_url,),
        database_url=database_url,
        rate_limit_per_second=1000.0,
        rate_limit_burst=1000,
        auth_cache_seconds=0.0,
        sso=SsoSettings(CLIENT_ID, CLIENT_SECRET, fake.url, public, (SESSION_SECRET,),
                        recheck_seconds=recheck_seconds),
    )
    with serve_app(create_app(settings), port=port) as url:
        yield url


@pytest.fixture
def sso_url(database_url: str, world: World, fake: FakeCloudController) -> Iterator[str]:
    with _sso_gateway(database_url, world, fake) as url:
        yield url


def _new_page(browser: Browser) -> Page:
    """A fresh browser context (no cookies, no stored password) and a page recording script errors."""
    page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    return page


def _log_in(page: Page, fake: FakeCloudController, user: str, request: pytest.FixtureRequest | None = None) -> Response:
    """On the login server's form: fill it in and press "Sign in". Returns the answer the
    browser ends on after the login server's and the gateway's redirects."""
    page.wait_for_selector("input[name=username]", timeout=WAIT_MS)
    assert page.url.startswith(f"{fake.login_url}/login"), page.url
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    if request is not None:
        _shot(page, request, "login-form")
    with page.expect_navigation(timeout=WAIT_MS) as navigation:
        page.get_by_role("button", name="Sign in").click()
    response = navigation.value
    assert response is not None
    return response


def _open_dashboard(page: Page, gateway: str, fake: FakeCloudController, instance: str, user: str,
                    request: pytest.FixtureRequest | None = None) -> Response:
    """Open the instance's dashboard URL (as from `cf service`) and sign in at the login server."""
    page.goto(f"{gateway}/ui/instances/{instance}", timeout=WAIT_MS)
    return _log_in(page, fake, user, request)


def _signed_in(page: Page, gateway: str, fake: FakeCloudController, instance: str, user: str,
               request: pytest.FixtureRequest | None = None) -> None:
    response = _open_dashboard(page, gateway, fake, instance, user, request)
    # The page keeps its chart choices in the fragment (history.replaceState) once drawn.
    landed = page.url.partition("#")[0]
    assert response.status == 200 and landed == f"{gateway}/ui/", (response.status, page.url,
                                                                    page.inner_text("body")[:500])
    page.wait_for_selector("body[data-ready='1']", timeout=WAIT_MS)


def _session_cookies(page: Page) -> list[dict[str, object]]:
    return [dict(c) for c in page.context.cookies() if c["name"] == SESSION_COOKIE]


def _services_on(page: Page) -> set[str]:
    return {a.get_attribute("data-service") or "" for a in page.query_selector_all("article.service")}


@pytest.mark.parametrize("user", ["developer", "auditor"])
def test_a_space_member_signs_in_with_the_dashboard_link_and_sees_their_services(
    browser: Browser, sso_url: str, fake: FakeCloudController, tenants: Tenants,
    request: pytest.FixtureRequest, user: str,
) -> None:
    page = _new_page(browser)
    _signed_in(page, sso_url, fake, tenants.a.instance_id, user, request)
    own = {s.instance_name for s in visible("space", SPACE_A1)}
    assert _services_on(page) == own
    who = page.inner_text("#who")
    assert f"Signed in as {user} with Cloud Foundry" in who and "space plan" in who
    expect(page.locator("#sso-status")).to_contain_text("last checked with Cloud Foundry")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    assert page.locator("#notice").is_hidden()
    # The session cookie: httpOnly and SameSite=Lax, out of reach of the page's scripts.
    cookies = _session_cookies(page)
    assert len(cookies) == 1, page.context.cookies()
    assert cookies[0]["httpOnly"] is True and cookies[0]["sameSite"] == "Lax" and cookies[0]["path"] == "/"
    assert SESSION_COOKIE not in page.evaluate("document.cookie")
    assert page.errors == []  # type: ignore[attr-defined]
    _shot(page, request, "signed-in")
    page.context.close()
    # Exactly what tenant A's own service key sees on the page.
    keyed = browser.new_context(http_credentials={"username": tenants.a.username, "password": tenants.a.password})
    key_page = keyed.new_page()
    key_page.goto(f"{sso_url}/ui/", timeout=WAIT_MS)
    key_page.wait_for_selector("body[data-ready='1']", timeout=WAIT_MS)
    assert _services_on(key_page) == own
    assert "with Cloud Foundry" not in key_page.inner_text("#who")
    assert key_page.locator("#signout").is_hidden()
    keyed.close()


@pytest.mark.parametrize("user", ["nobody", "elsewhere"])
def test_a_user_without_a_role_in_the_space_sees_no_access_and_gets_no_session(
    browser: Browser, sso_url: str, fake: FakeCloudController, tenants: Tenants,
    request: pytest.FixtureRequest, user: str,
) -> None:
    page = _new_page(browser)
    response = _open_dashboard(page, sso_url, fake, tenants.a.instance_id, user)
    assert response.status == 403
    assert page.url.startswith(f"{sso_url}/ui/sso/callback?")
    expect(page.locator("h1")).to_have_text("No access to this service instance")
    assert f"signed in to Cloud Foundry as {user}" in page.inner_text("main")
    assert _session_cookies(page) == []
    _shot(page, request, "no-access")
    # The page itself still wants credentials (asked in this context, with its cookies; a
    # headless browser navigating to a password prompt would wait for the prompt forever).
    assert page.context.request.get(f"{sso_url}/ui/", timeout=WAIT_MS).status == 401
    page.context.close()


def test_sign_out_ends_the_session_and_offers_the_login_servers_logout(
    browser: Browser, sso_url: str, fake: FakeCloudController, tenants: Tenants,
    request: pytest.FixtureRequest,
) -> None:
    page = _new_page(browser)
    _signed_in(page, sso_url, fake, tenants.a.instance_id, "developer")
    assert len(_session_cookies(page)) == 1
    with page.expect_navigation(timeout=WAIT_MS) as navigation:
        page.get_by_role("button", name="Sign out").click()
    response = navigation.value
    assert response is not None and response.status == 200
    assert page.url == f"{sso_url}/ui/sso/signed-out"
    expect(page.locator("h1")).to_have_text("Signed out")
    link = page.locator("#sso-link")
    expect(link).to_have_text("Also sign out of Cloud Foundry")
    assert (link.get_attribute("href") or "").startswith(f"{fake.login_url}/logout.do?")
    assert _session_cookies(page) == []
    assert page.errors == []  # type: ignore[attr-defined]
    _shot(page, request, "signed-out")
    # Reloading the tenant page now asks for credentials (asked in this context, with its
    # cookies; a headless browser navigating to a password prompt would wait for it forever).
    reload = page.context.request.get(f"{sso_url}/ui/", timeout=WAIT_MS)
    assert reload.status == 401
    assert reload.headers["www-authenticate"].startswith('Basic realm="tenant-metrics"')
    assert "dashboard link" in reload.text()
    # Signing out of Cloud Foundry too: the next dashboard link shows the login form again.
    page.click("#sso-link")
    expect(page.locator("body")).to_contain_text("You have successfully logged out", timeout=WAIT_MS)
    _signed_in(page, sso_url, fake, tenants.a.instance_id, "developer")
    page.context.close()


def test_access_removed_while_the_page_is_open(
    browser: Browser, database_url: str, world: World, fake: FakeCloudController, tenants: Tenants,
    request: pytest.FixtureRequest,
) -> None:
    with _sso_gateway(database_url, world, fake, recheck_seconds=1.0) as gateway:
        page = _new_page(browser)
        _signed_in(page, gateway, fake, tenants.a.instance_id, "auditor")
        expect(page.locator("#sso-status")).to_contain_text("checked again every 1 s")
        fake.remove_role("auditor", SPACE_A1, "space_auditor")
        sign_in_again = page.locator("#notice-signin")
        # Once the session is gone, a call of the page would get the service-key 401, whose
        # Basic challenge makes the browser ask for a password: the page stops calling instead.
        asked_for_password: list[str] = []
        page.on("response", lambda r: asked_for_password.append(r.url) if r.status == 401 else None)

        def refused_on_refresh() -> bool:
            # The next check with Cloud Controller comes once the last one is a second old.
            page.click("#refresh")
            try:
                sign_in_again.wait_for(state="visible", timeout=2000)
            except PlaywrightTimeout:
                return False
            return True

        wait_until(refused_on_refresh, timeout=15, what="the page saying access was lost")
        expect(page.locator("#notice-title")).to_have_text(re.compile(r"^You no longer have access"))
        assert "no longer have a role" in page.inner_text("#notice-what")
        assert sign_in_again.get_attribute("href") == f"instances/{tenants.a.instance_id}"
        assert "stale" in (page.get_attribute("#services", "class") or "")
        assert _session_cookies(page) == []  # cleared with the refusal
        page.click("#refresh")
        expect(page.locator("#chart-status")).not_to_have_text(re.compile("Loading"))
        assert asked_for_password == []
        assert page.errors == []  # type: ignore[attr-defined]
        _shot(page, request, "access-lost")
        # Signing in again: the login server remembers the user, Cloud Controller says no.
        with page.expect_navigation(timeout=WAIT_MS) as navigation:
            sign_in_again.click()
        response = navigation.value
        assert response is not None and response.status == 403
        expect(page.locator("h1")).to_have_text("No access to this service instance")
        page.context.close()
