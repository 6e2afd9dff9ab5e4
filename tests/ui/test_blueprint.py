"""The tenant page's blueprint behind the gateway's real credential check (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from common import db
from gateway.auth import Authenticator
from gateway.ui import create_ui_blueprint
from tests.ui.world import ORG_A, SPACE_A1, Credentials, add_tenant, revoke


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def tenant(database_url: str) -> Credentials:
    return add_tenant(database_url, scope="space", org_guid=ORG_A, space_guid=SPACE_A1, name="metrics-a")


@pytest.fixture
def client(database_url: str) -> FlaskClient:
    engine = db.make_engine(database_url)
    app = Flask(__name__)
    # ttl=0: every request asks the DB, so a revocation shows at once.
    app.register_blueprint(create_ui_blueprint(Authenticator(db.make_session_factory(engine), ttl=0).authenticate))
    yield app.test_client()
    engine.dispose()


def test_no_credentials_get_the_browser_prompt_and_a_helpful_page(client: FlaskClient) -> None:
    resp = client.get("/ui/")
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="tenant-metrics", charset="UTF-8"'
    text = resp.get_data(as_text=True)
    assert "cf service-key" in text and "Sign in" in text
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_wrong_password_is_refused(client: FlaskClient, tenant: Credentials) -> None:
    assert client.get("/ui/", headers=_basic(tenant.username, tenant.password + "x")).status_code == 401
    assert client.get("/ui/static/app.js").status_code == 401


def test_the_page_and_its_assets_with_credentials(client: FlaskClient, tenant: Credentials) -> None:
    auth = _basic(tenant.username, tenant.password)
    page = client.get("/ui/", headers=auth)
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    texts = [html]
    for asset in ("static/app.js", "static/chart.js", "static/errors.js", "static/style.css"):
        assert asset in html
        resp = client.get(f"/ui/{asset}", headers=auth)
        assert resp.status_code == 200 and resp.data
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        texts.append(resp.get_data(as_text=True))
    # Offline: nothing is fetched from another origin (the SVG namespace is a name, not a fetch).
    for text in texts:
        text = text.replace("http://www.w3.org/2000/svg", "")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
    assert client.get("/ui", headers=auth).status_code == 308  # Flask's slash redirect


def test_bearer_password_works_too(client: FlaskClient, tenant: Credentials) -> None:
    resp = client.get("/ui/", headers={"Authorization": f"Bearer {tenant.password}"})
    assert resp.status_code == 200


@pytest.mark.parametrize("name", ["../blueprint.py", "..%2Fblueprint.py", "nope.js", "__init__.py"])
def test_only_the_page_files_are_served(client: FlaskClient, tenant: Credentials, name: str) -> None:
    resp = client.get(f"/ui/static/{name}", headers=_basic(tenant.username, tenant.password))
    assert resp.status_code == 404


def test_session_says_who_without_secrets(client: FlaskClient, tenant: Credentials) -> None:
    resp = client.get("/ui/session", headers=_basic(tenant.username, tenant.password))
    assert resp.status_code == 200
    assert resp.get_json() == {"username": tenant.username, "scope": "space"}
    assert tenant.password not in resp.get_data(as_text=True)
    assert resp.headers["Cache-Control"] == "private, no-store"


def test_a_revoked_key_is_refused_at_once(client: FlaskClient, tenant: Credentials, database_url: str) -> None:
    auth = _basic(tenant.username, tenant.password)
    assert client.get("/ui/", headers=auth).status_code == 200
    revoke(database_url, tenant.binding_id)
    resp = client.get("/ui/", headers=auth)
    assert resp.status_code == 401
    assert "close this browser window" in resp.get_data(as_text=True)


def test_database_down_is_a_clear_503() -> None:
    # Nothing listens on port 1: the credential store is unreachable.
    engine = db.make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none", connect_args={"connect_timeout": 2})
    app = Flask(__name__)
    app.register_blueprint(create_ui_blueprint(Authenticator(db.make_session_factory(engine), ttl=0).authenticate))
    resp = app.test_client().get("/ui/", headers=_basic("tm-x", "y"))
    engine.dispose()
    assert resp.status_code == 503
    assert "Try again in a minute" in resp.get_data(as_text=True)


def test_dashboards_to_download(client: FlaskClient, tenant: Credentials) -> None:
    auth = _basic(tenant.username, tenant.password)
    listed = client.get("/ui/dashboards/", headers=auth).get_json()["dashboards"]
    assert {"aiven-opensearch.json", "aiven-elasticsearch.json"} <= set(listed)
    resp = client.get("/ui/dashboards/aiven-opensearch.json", headers=auth)
    assert resp.status_code == 200 and resp.get_json()["uid"] == "tm-aiven-opensearch"
    assert "attachment" in resp.headers["Content-Disposition"]
    assert client.get("/ui/dashboards/build.py", headers=auth).status_code == 404
    assert client.get("/ui/dashboards/aiven-opensearch.json").status_code == 401


def test_the_guide_is_public_for_the_catalog_link(tmp_path: Path) -> None:
    from gateway.ui import create_docs_blueprint
    from gateway.ui.docs import GUIDE

    app = Flask(__name__)
    app.register_blueprint(create_docs_blueprint())
    resp = app.test_client().get("/docs/tenant-guide.md")
    assert resp.status_code == 200
    assert resp.data == GUIDE.read_bytes()
    assert resp.mimetype == "text/plain"
    missing = Flask(__name__)
    missing.register_blueprint(create_docs_blueprint(tmp_path / "absent.md"))
    assert missing.test_client().get("/docs/tenant-guide.md").status_code == 404
