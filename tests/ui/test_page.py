"""The tenant page's sub-app behind the gateway's real credential check (SQLite and PostgreSQL).

Served over real HTTP on loopback by aiohttp, mounted at /ui like the gateway mounts it.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp import web
from sqlalchemy.engine import Engine

from gateway.auth import Authenticator
from gateway.ui import DOCS_ROUTE, UI_PREFIX, add_docs_routes, create_ui_app
from gateway.ui.docs import GUIDE
from tenant_metrics.core import db
from tenant_metrics.world import serve_app
from tests.ui.world import ORG_A, SPACE_A1, Credentials, add_tenant, revoke

TIMEOUT = 30


def _gateway(engine: Engine) -> web.Application:
    """A parent app like the gateway's: the page at /ui and the public guide."""
    # ttl=0: every request asks the DB, so a revocation shows at once.
    auth = Authenticator(db.make_session_factory(engine), ttl=0)

    async def authenticate(header: str | None) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, auth.authenticate, header)

    app = web.Application()
    app.add_subapp(UI_PREFIX, create_ui_app(authenticate))
    add_docs_routes(app.router)
    return app


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": "Basic " + token}


def _mimetype(resp: requests.Response) -> str:
    return resp.headers["Content-Type"].split(";")[0].strip()


class Client:
    """``requests`` against one base URL; redirects are never followed."""

    def __init__(self, base: str) -> None:
        self.base = base

    def get(self, path: str, headers: dict[str, str] | None = None) -> requests.Response:
        return requests.get(
            self.base + path, headers=headers, allow_redirects=False, timeout=TIMEOUT
        )


@pytest.fixture
def tenant(database_url: str) -> Credentials:
    return add_tenant(
        database_url, scope="space", org_guid=ORG_A, space_guid=SPACE_A1, name="metrics-a"
    )


@pytest.fixture
def client(database_url: str) -> Iterator[Client]:
    engine = db.make_engine(database_url)
    try:
        with serve_app(_gateway(engine)) as base:
            yield Client(base)
    finally:
        engine.dispose()


def test_no_credentials_get_the_browser_prompt_and_a_helpful_page(client: Client) -> None:
    resp = client.get("/ui/")
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="tenant-metrics", charset="UTF-8"'
    text = resp.text
    assert "cf service-key" in text and "Sign in" in text
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"


def test_wrong_password_is_refused(client: Client, tenant: Credentials) -> None:
    wrong = _basic(tenant.username, tenant.password + "x")
    assert client.get("/ui/", headers=wrong).status_code == 401
    assert client.get("/ui/static/app.js").status_code == 401


def test_the_page_and_its_assets_with_credentials(client: Client, tenant: Credentials) -> None:
    auth = _basic(tenant.username, tenant.password)
    page = client.get("/ui/", headers=auth)
    assert page.status_code == 200
    assert _mimetype(page) == "text/html"
    assert page.headers["Cache-Control"] == "private, no-cache"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Referrer-Policy"] == "same-origin"
    html = page.text
    texts = [html]
    for asset in ("static/app.js", "static/chart.js", "static/errors.js", "static/style.css"):
        assert asset in html
        resp = client.get(f"/ui/{asset}", headers=auth)
        assert resp.status_code == 200 and resp.content
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        texts.append(resp.text)
    # Offline: nothing is fetched from another origin (the SVG namespace is a name, not a fetch).
    for text in texts:
        text = text.replace("http://www.w3.org/2000/svg", "")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
    # The slash redirect Flask made, kept: permanent, method-preserving, before any auth.
    for headers in (auth, None):
        redirect = client.get("/ui", headers=headers)
        assert redirect.status_code == 308
        assert redirect.headers["Location"] == "/ui/"


def test_alerts_and_capacity_come_first_and_data_stays_text(client: Client, tenant: Credentials) -> None:
    """The page as served: alerts, then capacity, above the services; the script that fills
    them builds nodes from text only (the browser test checks hostile text stays text)."""
    auth = _basic(tenant.username, tenant.password)
    html = client.get("/ui/", headers=auth).text
    order = [html.index(f'id="{s}-section"') for s in ("alerts", "capacity", "services", "chart")]
    assert order == sorted(order)
    app = client.get("/ui/static/app.js", headers=auth).text
    # Alerts through the gateway's tenant-filtered endpoint, capacity from the recording rules.
    assert 'api("alerts")' in app
    for name in ("aiven_service:disk_used_percent:max", "aiven_service:disk_days_until_full:min",
                 "aiven_service:jvm_heap_used_percent:max"):
        assert name in app
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in app, sink
    # The CSP still allows our own scripts only, with no inline script or style.
    csp = client.get("/ui/", headers=auth).headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp


def test_bearer_password_works_too(client: Client, tenant: Credentials) -> None:
    resp = client.get("/ui/", headers={"Authorization": f"Bearer {tenant.password}"})
    assert resp.status_code == 200


@pytest.mark.parametrize("name", ["../page.py", "..%2Fpage.py", "nope.js", "__init__.py"])
def test_only_the_page_files_are_served(client: Client, tenant: Credentials, name: str) -> None:
    resp = client.get(f"/ui/static/{name}", headers=_basic(tenant.username, tenant.password))
    assert resp.status_code == 404


def test_session_says_who_without_secrets(client: Client, tenant: Credentials) -> None:
    resp = client.get("/ui/session", headers=_basic(tenant.username, tenant.password))
    assert resp.status_code == 200
    assert resp.json() == {"username": tenant.username, "scope": "space"}
    assert tenant.password not in resp.text
    assert resp.headers["Cache-Control"] == "private, no-store"
    assert resp.headers["Content-Type"] == "application/json"


def test_a_revoked_key_is_refused_at_once(
    client: Client, tenant: Credentials, database_url: str
) -> None:
    auth = _basic(tenant.username, tenant.password)
    assert client.get("/ui/", headers=auth).status_code == 200
    revoke(database_url, tenant.binding_id)
    resp = client.get("/ui/", headers=auth)
    assert resp.status_code == 401
    assert "close this browser window" in resp.text


def test_database_down_is_a_clear_503() -> None:
    # Nothing listens on port 1: the credential store is unreachable.
    engine = db.make_engine(
        "postgresql+psycopg://postgres@127.0.0.1:1/none", connect_args={"connect_timeout": 2}
    )
    try:
        with serve_app(_gateway(engine)) as base:
            resp = Client(base).get("/ui/", headers=_basic("tm-x", "y"))
    finally:
        engine.dispose()
    assert resp.status_code == 503
    assert "Try again in a minute" in resp.text


def test_dashboards_to_download(client: Client, tenant: Credentials) -> None:
    auth = _basic(tenant.username, tenant.password)
    listed = client.get("/ui/dashboards/", headers=auth).json()["dashboards"]
    assert {"aiven-opensearch.json", "aiven-elasticsearch.json"} <= set(listed)
    resp = client.get("/ui/dashboards/aiven-opensearch.json", headers=auth)
    assert resp.status_code == 200 and resp.json()["uid"] == "tm-aiven-opensearch"
    assert "attachment" in resp.headers["Content-Disposition"]
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert client.get("/ui/dashboards/build.py", headers=auth).status_code == 404
    assert client.get("/ui/dashboards/aiven-opensearch.json").status_code == 401


def test_the_guide_is_public_for_the_catalog_link(client: Client, tmp_path: Path) -> None:
    resp = client.get("/docs/tenant-guide.md")
    assert resp.status_code == 200
    assert resp.content == GUIDE.read_bytes()
    assert _mimetype(resp) == "text/plain"
    assert resp.headers["Cache-Control"] == "public, max-age=300"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    # The page's middleware stays inside /ui: the guide carries no page CSP.
    assert "Content-Security-Policy" not in resp.headers
    missing = web.Application()
    add_docs_routes(missing.router, tmp_path / "absent.md")
    assert missing.router.named_resources()[DOCS_ROUTE].canonical == "/docs/tenant-guide.md"
    with serve_app(missing) as base:
        assert Client(base).get("/docs/tenant-guide.md").status_code == 404


def test_a_dashboard_link_without_sso_explains_itself(client: Client) -> None:
    resp = client.get("/ui/instances/9a000000-0000-4000-8000-00000000000a")
    assert resp.status_code == 404 and _mimetype(resp) == "text/html"
    assert "Single sign-on is not enabled" in resp.text and "cf service-key" in resp.text
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
