"""The tenant page in a real headless Chromium, through the real gateway, for two tenants."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from tenant_metrics.world import wait_until
from tests.ui.conftest import Tenants
from tests.ui.world import (
    ORG_B,
    SERVICES,
    SPACE_A1,
    XSS_NAME,
    Credentials,
    Service,
    World,
    revoke,
    visible,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's 'chromium' package (make deps)")
    pw = sync_playwright().start()
    try:
        # Debian's Chromium, never a downloaded one.
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
    finally:
        pw.stop()


def _open(browser: Browser, base: str, who: Credentials | None, hash_: str = "") -> Page:
    context = browser.new_context(
        http_credentials={"username": who.username, "password": who.password} if who else None,
        viewport={"width": 1280, "height": 1000},
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    if who is not None:
        page.goto(f"{base}/ui/{hash_}")
        page.wait_for_selector("body[data-ready='1']", timeout=20000)
    return page


def _shot(page: Page, request: pytest.FixtureRequest, what: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{request.node.name}-{what}").strip("-")
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def _services_on(page: Page) -> set[str]:
    return {a.get_attribute("data-service") or "" for a in page.query_selector_all("article.service")}


def _chart_points(page: Page) -> list[int]:
    return [int(p.get_attribute("data-points") or 0) for p in page.query_selector_all("#chart path.series")]


@pytest.mark.parametrize("tenant,scope,value", [("a", "space", SPACE_A1), ("b", "org", ORG_B)])
def test_each_tenant_sees_its_services_health_and_a_chart(
    browser: Browser, gateway_url: str, tenants: Tenants, request: pytest.FixtureRequest,
    tenant: str, scope: str, value: str,
) -> None:
    who = getattr(tenants, tenant)
    page = _open(browser, gateway_url, who)
    own = visible(scope, value)
    others = [s for s in SERVICES if s not in own]
    assert _services_on(page) == {s.instance_name for s in own}
    text = page.inner_text("body")
    for s in others:
        assert s.instance_name not in text and s.aiven_name not in text and s.instance_guid not in page.content()
    # Health: every node of every own service is listed, with its state and last scrape.
    for s in own:
        card = page.locator(f"article.service[data-service='{s.instance_name}']")
        rows = card.locator("tr.node")
        assert rows.count() == s.nodes + s.down_nodes
        assert card.locator("tr.node[data-health='up']").count() == s.nodes
        if s.down_nodes:
            down = card.locator("tr.node[data-health='down']")
            assert down.count() == s.down_nodes
            assert "connection refused" in down.first.locator("td.error").inner_text()
            assert "degraded" in (card.get_attribute("class") or "")
        assert "s ago" in rows.first.inner_text()
    assert f"{scope} plan" in page.inner_text("#who") and who.username in page.inner_text("#who")
    # The chart: one path per node of the default metric, each with points.
    points = _chart_points(page)
    assert len(points) == sum(s.nodes for s in own), page.inner_text("#chart-status")
    assert all(n >= 1 for n in points)
    assert page.get_attribute("#chart path.series", "d").startswith("M")
    assert page.locator("#notice").is_hidden()
    assert page.locator("#dashboards a").count() >= 2  # the Grafana dashboards to import
    if any(s.instance_name == XSS_NAME for s in own):
        assert XSS_NAME in text  # shown as text...
        assert page.locator("#services img, #legend img").count() == 0  # ...never as markup
        assert page.evaluate("window.tmXss") is None
    assert page.errors == []  # type: ignore[attr-defined]
    _shot(page, request, "page")
    page.context.close()


def test_a_chosen_metric_service_and_range(browser: Browser, gateway_url: str, tenants: Tenants,
                                           world: World, request: pytest.FixtureRequest) -> None:
    world.wait_for_data(5)
    page = _open(browser, gateway_url, tenants.a)
    options = page.eval_on_selector_all("#metric option", "os => os.map(o => o.value)")
    assert "opensearch_jvm_mem_heap_used_percent" in options and "elasticsearch_jvm_mem_heap_used_percent" in options
    search_a = next(s for s in SERVICES if s.instance_name == "search-a")
    page.select_option("#range", "900")
    page.select_option("#service", search_a.aiven_name)
    page.select_option("#metric", "opensearch_indices_search_query_total")
    page.check("#rate")
    expect(page.locator("#chart-status")).to_have_text(
        re.compile(r"^\d+ series, .*: rate\(opensearch_indices_search_query_total\{aiven_service_name="))
    assert len(_chart_points(page)) == search_a.nodes
    assert all(n >= 1 for n in _chart_points(page))
    assert page.locator("#legend li").count() == search_a.nodes
    assert "#" in page.url and "rate=1" in page.url  # the choice is in the link, to share or reload
    # Pointing at the latest points shows each series' value there.
    box = page.locator("#chart").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.97, box["y"] + box["height"] / 2)
    expect(page.locator("#chart g.hover")).to_have_attribute("visibility", "visible")
    assert page.locator("#chart g.hover text.tip-row").count() == search_a.nodes
    _shot(page, request, "hover")
    # The chart follows the choices: another metric of the other own service.
    page.select_option("#service", "")
    page.uncheck("#rate")
    page.select_option("#metric", "elasticsearch_jvm_mem_heap_used_percent")
    expect(page.locator("#chart-status")).to_have_text(re.compile(r": elasticsearch_jvm_mem_heap_used_percent$"))
    assert len(_chart_points(page)) == 1  # legacy-a has one node
    _shot(page, request, "chart")
    page.context.close()


def test_friendly_errors(browser: Browser, gateway_url: str, tenants: Tenants, world: World,
                         database_url: str, request: pytest.FixtureRequest) -> None:
    world.wait_for_data(8)
    page = _open(browser, gateway_url, tenants.a)

    notice = page.locator("#notice")

    def draw(expr: str, kind: str) -> str:
        page.fill("#expr", expr)
        page.click("#draw")
        expect(notice).to_have_attribute("data-kind", kind, timeout=20000)
        expect(notice).to_be_visible()
        return notice.inner_text()

    # Too expensive: Prometheus refuses to hold that many samples.
    text = draw('count_over_time({__name__=~".+"}[10m:1s])', "expensive")
    assert "too expensive" in text and "shorter time range" in text
    assert page.get_attribute("#chart", "data-points") == "0"
    _shot(page, request, "expensive")
    # Not PromQL.
    text = draw("rate(up[5m]", "bad-query")
    assert "unclosed left parenthesis" in text and "What to do" in text
    # A valid query clears the message.
    page.fill("#expr", "up")
    page.click("#draw")
    page.wait_for_selector("#notice[hidden]", state="attached")

    # Refused endpoints: the page explains the gateway's real 403s.
    for path, method in (("status/config", "GET"), ("admin/tsdb/snapshot", "POST"), ("write", "POST")):
        info = page.evaluate(
            """async ([path, method]) => {
                 const r = await fetch(new URL('../api/v1/' + path, location.href), {method});
                 return TMErrors.explain(r.status, await r.json(), null);
               }""",
            [path, method],
        )
        assert info["kind"] == "refused", (path, info)
        assert "not available through the tenant gateway" in info["what"]

    # The gateway's own limits read as "too expensive", with what to do.
    now = 1_800_000_000
    for path, params in (
        ("query", {"query": "up" + " " * 20000}),  # longer than the gateway accepts
        ("query_range", {"query": "up", "start": now - 90 * 86400, "end": now, "step": 3600}),  # range too long
        ("query_range", {"query": "up", "start": now - 86400, "end": now, "step": 1}),  # too many points
    ):
        info = page.evaluate(
            """async ([path, params]) => {
                 const r = await fetch(new URL('../api/v1/' + path, location.href),
                   {method: 'POST', body: new URLSearchParams(params)});
                 return TMErrors.explain(r.status, await r.json(), null);
               }""",
            [path, {k: str(v) for k, v in params.items()}],
        )
        assert info["kind"] == "expensive", (path, info)

    # The key is deleted (cf delete-service-key): the next refresh says so and what to do.
    revoke(database_url, tenants.a.binding_id)
    page.click("#refresh")
    page.wait_for_selector("#notice[data-kind='credentials']:not([hidden])", timeout=20000)
    text = page.inner_text("#notice")
    assert "no longer accepted" in text and "cf service-key" in text
    assert "stale" in (page.get_attribute("#services", "class") or "")  # last list kept, greyed out
    _shot(page, request, "revoked")
    page.context.close()


def test_without_credentials_the_page_says_how_to_sign_in(browser: Browser, gateway_url: str,
                                                          tenants: Tenants) -> None:
    context = browser.new_context()
    # What the browser receives before (or instead of) signing in: the prompt, and a page
    # that says where the username and password come from if the prompt is cancelled.
    resp = context.request.get(f"{gateway_url}/ui/")
    assert resp.status == 401
    assert resp.headers["www-authenticate"].startswith('Basic realm="tenant-metrics"')
    page = context.new_page()
    page.set_content(resp.text())
    assert "cf service-key" in page.inner_text("body")
    # The API names the same realm, so the browser reuses the page's password for fetch().
    api = context.request.get(f"{gateway_url}/api/v1/targets")
    assert api.status == 401 and api.headers["www-authenticate"] == resp.headers["www-authenticate"]
    context.close()


def _firing(gateway: str, who: Credentials, alertname: str) -> set[str]:
    """Instance names whose ``alertname`` fires for ``who``, through the gateway."""
    resp = requests.get(f"{gateway}/api/v1/alerts", auth=who.auth, timeout=10)
    resp.raise_for_status()
    return {a["labels"].get("cf_service_instance_name", "") for a in resp.json()["data"]["alerts"]
            if a["labels"].get("alertname") == alertname and a["state"] == "firing"}


def _refresh_until_one(page: Page, locator: Locator, what: str) -> None:
    """On a loaded machine a scrape can miss, which resolves an alert for one `for` period
    (3 s here); the page shows it again on a later refresh. Bounded at 30 s."""

    def shown() -> bool:
        if locator.count() == 1:
            return True
        page.click("#refresh")
        page.wait_for_timeout(1000)
        return locator.count() == 1

    wait_until(shown, timeout=30, what=what)


def _set_status(world: World, services: list[Service], code: float | None) -> None:
    names = {s.aiven_name for s in services}
    for node in world.nodes:
        if node.identity.service in names:
            node.knobs.status_code = code


def test_alerts_and_capacity_per_tenant(browser: Browser, gateway_url: str, tenants: Tenants,
                                        world: World, request: pytest.FixtureRequest) -> None:
    """A red cluster (the exporter's knob) fires the shipped rule in a real Prometheus; the
    owner's page shows it at the top, the other tenant's does not; hostile annotation text
    (the instance name is templated into the summary) stays text."""
    search_a = next(s for s in SERVICES if s.instance_name == "search-a")
    xss = next(s for s in SERVICES if s.instance_name == XSS_NAME)
    red = "AivenSearchClusterRed"
    _set_status(world, [search_a, xss], 3.0)
    try:
        # for: 5m scaled by 0.01 -> 3 s, evaluated every second.
        wait_until(lambda: _firing(gateway_url, tenants.a, red) == {"search-a"}, timeout=30,
                   what="search-a red and firing for tenant A")
        wait_until(lambda: _firing(gateway_url, tenants.b, red) == {XSS_NAME}, timeout=30,
                   what="the hostile-named service red and firing for tenant B")

        page = _open(browser, gateway_url, tenants.a)
        group = page.locator("#alerts article.alert-group[data-service='search-a']")
        try:
            _refresh_until_one(page, group, "search-a's alert group on tenant A's page")
            expect(group).to_have_count(1)
        except (AssertionError, TimeoutError) as exc:  # say what the page showed instead
            raise AssertionError(f"{exc}\npage: {page.inner_text('#alerts-section')!r} "
                                 f"notice: {page.inner_text('#notice')!r} errors: {page.errors}") from None  # type: ignore[attr-defined]
        alert = group.locator(f"li.alert[data-alertname='{red}']")
        expect(alert).to_have_count(1)
        assert alert.get_attribute("data-state") == "firing"
        assert alert.get_attribute("data-severity") == "critical"
        text = alert.inner_text()
        assert "search-a: search cluster is red" in text  # summary
        assert "at least one primary shard is not allocated" in text  # description
        assert "since " in text and "ago" in text  # activeAt
        assert page.locator("#alerts article.alert-group").evaluate_all(
            "gs => gs.map(g => g.dataset.service)") == ["search-a"]
        assert XSS_NAME not in page.inner_text("body")  # tenant B's alert is not here
        assert "firing" in page.inner_text("#alerts-status")
        # The alerts come before the services, at the top of the page.
        assert page.evaluate("document.querySelector('main').firstElementChild.id") == "alerts-section"
        # Capacity: one card per own service, with numbers.
        cards = page.locator("#capacity article.capacity-card")
        assert {c.get_attribute("data-service") for c in cards.all()} == {s.instance_name for s in visible("space", SPACE_A1)}
        for card in cards.all():
            assert re.fullmatch(r"\d+\.\d %", card.locator("[data-figure='disk'] .figure-value").inner_text())
            assert re.fullmatch(r"\d+\.\d %", card.locator("[data-figure='heap'] .figure-value").inner_text())
            # The fake disks fill slowly (about 69 days from 60 GB at 10 kB/s).
            assert re.fullmatch(r"\d+ days|more than a year",
                                card.locator("[data-figure='days'] .figure-value").inner_text())
        assert page.errors == []  # type: ignore[attr-defined]
        _shot(page, request, "alerts-a")
        page.context.close()

        page = _open(browser, gateway_url, tenants.b)
        assert "search-a" not in page.locator("#alerts").inner_text()
        group = page.locator("#alerts article.alert-group").filter(has=page.locator(f"li[data-alertname='{red}']"))
        _refresh_until_one(page, group, "the hostile-named service's alert group on tenant B's page")
        expect(group).to_have_count(1)
        assert group.get_attribute("data-service") == XSS_NAME
        summary = group.locator(f"li[data-alertname='{red}'] .alert-summary").inner_text()
        assert summary == f"{XSS_NAME}: search cluster is red"  # the markup, as text
        assert page.locator("#alerts img, #capacity img").count() == 0  # ...never as an element
        assert page.evaluate("window.tmXss") is None
        assert page.locator(f"#capacity article.capacity-card[data-service='{search_a.instance_name}']").count() == 0
        assert page.errors == []  # type: ignore[attr-defined]
        _shot(page, request, "alerts-b")
        page.context.close()
    finally:
        _set_status(world, [search_a, xss], None)


def test_a_service_whose_disk_is_not_filling_says_so(browser: Browser, gateway_url: str, tenants: Tenants,
                                                      world: World) -> None:
    legacy = next(s for s in SERVICES if s.instance_name == "legacy-a")
    nodes = [n for n in world.nodes if n.identity.service == legacy.aiven_name]
    for n in nodes:
        n.knobs.disk_free_bytes_per_second = 1e4  # being freed: no days-to-full series
    try:
        query = f'aiven_service:disk_days_until_full:min{{cf_service_instance_name="{legacy.instance_name}"}}'

        def gone() -> bool:
            resp = requests.get(f"{gateway_url}/api/v1/query", params={"query": query},
                                auth=tenants.a.auth, timeout=10)
            return resp.ok and resp.json()["data"]["result"] == []

        # The free space now only grows, so deriv() turns positive within a few evaluations.
        wait_until(gone, timeout=60, what="legacy-a's days-to-full series gone")
        page = _open(browser, gateway_url, tenants.a)
        card = page.locator(f"#capacity article.capacity-card[data-service='{legacy.instance_name}']")
        days = card.locator("[data-figure='days'] .figure-value")

        def says_not_filling() -> bool:
            # deriv() over a short window can flip back for one evaluation on a loaded
            # machine (a late scrape); the page shows the settled answer on a later refresh.
            if days.inner_text() == "not filling":
                return True
            page.click("#refresh")
            page.wait_for_timeout(1000)
            return days.inner_text() == "not filling"

        wait_until(says_not_filling, timeout=30, what="legacy-a's card saying not filling")
        assert days.inner_text() == "not filling"
        page.context.close()
    finally:
        for n in nodes:
            n.knobs.disk_free_bytes_per_second = None
