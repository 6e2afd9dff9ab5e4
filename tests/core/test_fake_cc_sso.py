"""The fake UAA + Cloud Controller keep the dashboard-SSO contracts (docs/external-apis.md §
Dashboard SSO): the authorization-code flow hop by hop, every error, and the permissions a
user's roles give. Real HTTP with ``requests``; the only stand-in is the injected clock."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tenant_metrics.fakes.cloudcontroller import FakeCloudController

CLIENT, SECRET = "tenant-metrics-dashboard", "dashboard-secret"
CALLBACK = "https://metrics.example.test/ui/sso/callback"
OTHER_CALLBACK = "https://other.example.test/cb"
SCOPES = "openid cloud_controller_service_permissions.read"
ORG, SPACE, OTHER_ORG, OTHER_SPACE = "org-1", "space-1", "org-2", "space-2"
INSTANCE, OTHER_INSTANCE = (
    "11111111-1111-4111-8111-111111111111",
    "22222222-2222-4222-8222-222222222222",
)
T = 5  # seconds: every request's bound


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock) -> Iterator[FakeCloudController]:
    cc = FakeCloudController(token_ttl=3600, clock=clock, user_token_ttl=600, code_ttl=300)
    with cc:
        cc.add_dashboard_client(CLIENT, SECRET, CALLBACK)
        cc.add_owner(INSTANCE, "metrics", SPACE, "dev", ORG, "acme")
        cc.add_owner(OTHER_INSTANCE, "other", OTHER_SPACE, "prod", OTHER_ORG, "globex")
        cc.add_user("alice@example.test", "alice-pw")
        cc.add_space_role("alice@example.test", SPACE, "space_developer")
        yield cc


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_params(
    challenge: str | None, state: str | None = "st@te /+?&=", **extra: str
) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": CLIENT,
        "redirect_uri": CALLBACK,
        "scope": SCOPES,
    }
    if state is not None:
        params["state"] = state
    if challenge is not None:
        params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    return params | extra


def query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def sign_in(
    fake: FakeCloudController, browser: requests.Session, user: str, password: str
) -> requests.Response:
    """GET the login form, POST it with its CSRF token; returns the login.do answer."""
    page = browser.get(f"{fake.login_url}/login", timeout=T, allow_redirects=False)
    assert page.status_code == 200
    csrf = re.search(r'name="X-Uaa-Csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    return browser.post(
        f"{fake.login_url}/login.do",
        data={"username": user, "password": password, "X-Uaa-Csrf": csrf.group(1)},
        timeout=T,
        allow_redirects=False,
    )


def get_code(
    fake: FakeCloudController,
    browser: requests.Session,
    challenge: str | None,
    user: str = "alice@example.test",
    password: str = "alice-pw",
    **extra: str,
) -> str:
    """The whole browser side: authorize, sign in when needed, and the code off the callback."""
    hop = browser.get(
        f"{fake.login_url}/oauth/authorize",
        params=authorize_params(challenge, **extra),
        timeout=T,
        allow_redirects=False,
    )
    if hop.headers["Location"] == f"{fake.login_url}/login":
        back = sign_in(fake, browser, user, password)
        hop = browser.get(back.headers["Location"], timeout=T, allow_redirects=False)
    assert hop.status_code == 302 and hop.headers["Location"].startswith(CALLBACK + "?")
    return query(hop.headers["Location"])["code"]


def exchange(
    fake: FakeCloudController, code: str, verifier: str | None, **overrides: str
) -> requests.Response:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK}
    if verifier is not None:
        form["code_verifier"] = verifier
    return requests.post(
        f"{fake.uaa_url}/oauth/token", data=form | overrides, auth=(CLIENT, SECRET), timeout=T
    )


def user_token(
    fake: FakeCloudController, user: str = "alice@example.test", password: str = "alice-pw"
) -> str:
    verifier, challenge = pkce_pair()
    resp = exchange(fake, get_code(fake, requests.Session(), challenge, user, password), verifier)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def other_client_token(fake: FakeCloudController, client_id: str) -> dict[str, object]:
    """A signed-in user's token for another dashboard client (secret "s", OTHER_CALLBACK)."""
    browser = requests.Session()
    get_code(fake, browser, None)
    hop = browser.get(
        f"{fake.login_url}/oauth/authorize",
        params={"response_type": "code", "client_id": client_id, "redirect_uri": OTHER_CALLBACK},
        timeout=T,
        allow_redirects=False,
    )
    form = {
        "grant_type": "authorization_code",
        "code": query(hop.headers["Location"])["code"],
        "redirect_uri": OTHER_CALLBACK,
    }
    resp = requests.post(f"{fake.uaa_url}/oauth/token", data=form, auth=(client_id, "s"), timeout=T)
    assert resp.status_code == 200, resp.text
    body: dict[str, object] = resp.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"bearer {token}"}


def permissions(fake: FakeCloudController, token: str, guid: str = INSTANCE) -> requests.Response:
    return requests.get(
        f"{fake.url}/v3/service_instances/{guid}/permissions", headers=bearer(token), timeout=T
    )


def test_root_links_the_login_server_and_the_uaa(fake: FakeCloudController) -> None:
    links = requests.get(fake.url + "/", timeout=T).json()["links"]
    assert links["login"]["href"] == fake.login_url == f"{fake.url}/login"
    assert links["uaa"]["href"] == fake.uaa_url == f"{fake.url}/uaa"


def test_the_whole_flow_hop_by_hop(fake: FakeCloudController) -> None:
    browser = requests.Session()
    verifier, challenge = pkce_pair()
    params = authorize_params(challenge)
    first = browser.get(
        f"{fake.login_url}/oauth/authorize", params=params, timeout=T, allow_redirects=False
    )
    assert first.status_code == 302 and first.headers["Location"] == f"{fake.login_url}/login"
    cookie = first.headers["Set-Cookie"]
    assert "Path=/login" in cookie and "HttpOnly" in cookie

    page = browser.get(f"{fake.login_url}/login", timeout=T)
    assert '<form method="post" action="/login/login.do">' in page.text
    assert (
        'name="username"' in page.text
        and 'name="password"' in page.text
        and ">Sign in</button>" in page.text
    )

    back = sign_in(fake, browser, "alice@example.test", "alice-pw")
    assert back.status_code == 302
    assert urlsplit(back.headers["Location"]).path == "/login/oauth/authorize"
    assert query(back.headers["Location"]) == params  # the saved request, unchanged

    done = browser.get(back.headers["Location"], timeout=T, allow_redirects=False)
    assert done.status_code == 302
    answer = query(done.headers["Location"])
    assert answer["state"] == params["state"] and set(answer) == {"code", "state"}

    token = exchange(fake, answer["code"], verifier)
    assert token.status_code == 200 and token.headers["Cache-Control"] == "no-store"
    body = token.json()
    assert set(body) == {"access_token", "token_type", "id_token", "expires_in", "scope", "jti"}
    assert body["token_type"] == "bearer" and body["scope"] == SCOPES and body["expires_in"] == 599

    info = requests.get(f"{fake.uaa_url}/userinfo", headers=bearer(body["access_token"]), timeout=T)
    assert info.status_code == 200
    user = info.json()
    assert user["user_name"] == "alice@example.test" and user["sub"] == user["user_id"]
    assert user["email"] == "alice@example.test" and user["email_verified"] is True
    assert user["previous_logon_time"] is None  # first sign-in
    assert set(user) >= {"given_name", "family_name", "name"}

    assert permissions(fake, body["access_token"]).json() == {"manage": True, "read": True}

    # Signed in: the next authorize goes straight back with a code, and no state when none was sent.
    again = browser.get(
        f"{fake.login_url}/oauth/authorize",
        params=authorize_params(None, state=None),
        timeout=T,
        allow_redirects=False,
    )
    assert again.status_code == 302 and set(query(again.headers["Location"])) == {"code"}


def test_login_failures(fake: FakeCloudController) -> None:
    browser = requests.Session()
    for user, password in (("alice@example.test", "wrong"), ("nobody", "alice-pw")):
        bad = sign_in(fake, browser, user, password)
        assert (
            bad.status_code == 302
            and bad.headers["Location"] == f"{fake.login_url}/login?error=login_failure"
        )
    page = browser.get(f"{fake.login_url}/login", params={"error": "login_failure"}, timeout=T)
    assert "Unable to verify email or password. Please try again." in page.text
    forged = requests.post(
        f"{fake.login_url}/login.do",
        data={"username": "alice@example.test", "password": "alice-pw", "X-Uaa-Csrf": "guess"},
        timeout=T,
        allow_redirects=False,
    )
    assert forged.status_code == 302 and "error=invalid_login_request" in forged.headers["Location"]
    home = sign_in(fake, browser, "alice@example.test", "alice-pw")  # no authorize saved
    assert home.headers["Location"] == f"{fake.login_url}/"
    assert "alice@example.test" in browser.get(home.headers["Location"], timeout=T).text


@pytest.mark.parametrize("signed_in", [False, True])
def test_authorize_never_redirects_to_an_unregistered_uri(
    fake: FakeCloudController, signed_in: bool
) -> None:
    browser = requests.Session()
    if signed_in:
        get_code(fake, browser, None)
    for params, text in (
        (authorize_params(None, client_id="unknown"), "No client with requested id: unknown"),
        (
            authorize_params(None, redirect_uri="https://evil.example/cb"),
            "did not match one of the registered",
        ),
        (
            authorize_params(None, redirect_uri=CALLBACK + "/more"),
            "did not match one of the registered",
        ),
    ):
        resp = browser.get(
            f"{fake.login_url}/oauth/authorize", params=params, timeout=T, allow_redirects=False
        )
        assert resp.status_code == 400 and "Location" not in resp.headers
        assert resp.headers["Content-Type"].startswith("text/html") and text in resp.text


def test_authorize_errors_go_back_to_the_client(fake: FakeCloudController) -> None:
    browser = requests.Session()
    get_code(fake, browser, None)
    _, challenge = pkce_pair()
    for params, error, description in (
        (authorize_params(None, response_type="token"), "unsupported_response_type", "token"),
        (
            authorize_params(None, scope="openid cloud_controller.admin"),
            "invalid_scope",
            "cloud_controller.admin",
        ),
        (
            authorize_params(challenge, code_challenge_method="S512"),
            "invalid_request",
            "Unsupported code challenge",
        ),
        (authorize_params("too-short"), "invalid_request", "Code challenge length must"),
    ):
        resp = browser.get(
            f"{fake.login_url}/oauth/authorize", params=params, timeout=T, allow_redirects=False
        )
        assert resp.status_code == 302 and resp.headers["Location"].startswith(CALLBACK + "?")
        answer = query(resp.headers["Location"])
        assert answer["error"] == error and description in answer["error_description"]
        assert answer["state"] == params["state"] and "code" not in answer


def test_a_code_is_single_use_short_lived_and_unguessable(
    fake: FakeCloudController, clock: Clock
) -> None:
    browser = requests.Session()
    verifier, challenge = pkce_pair()
    code = get_code(fake, browser, challenge)
    assert exchange(fake, code, verifier).status_code == 200
    reused = exchange(fake, code, verifier)
    assert reused.status_code == 400
    assert reused.json() == {
        "error": "invalid_grant",
        "error_description": f"Invalid authorization code: {code}",
    }

    late = get_code(fake, browser, challenge)
    clock.now += 300
    assert (
        exchange(fake, late, verifier).json()["error_description"]
        == f"Invalid authorization code: {late}"
    )
    assert exchange(fake, "made-up", verifier).json()["error"] == "invalid_grant"
    missing = exchange(fake, "", verifier)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"


def test_the_redirect_uri_must_repeat_and_a_failed_exchange_spends_the_code(
    fake: FakeCloudController,
) -> None:
    browser = requests.Session()
    verifier, challenge = pkce_pair()
    code = get_code(fake, browser, challenge)
    wrong = exchange(fake, code, verifier, redirect_uri=CALLBACK + "/other")
    assert wrong.status_code == 400
    assert wrong.json() == {"error": "invalid_grant", "error_description": "Redirect URI mismatch."}
    assert exchange(fake, code, verifier).json()["error"] == "invalid_grant"  # spent, as in UAA
    omitted = get_code(fake, browser, challenge)
    form = {"grant_type": "authorization_code", "code": omitted, "code_verifier": verifier}
    resp = requests.post(f"{fake.uaa_url}/oauth/token", data=form, auth=(CLIENT, SECRET), timeout=T)
    assert resp.json()["error_description"] == "Redirect URI mismatch."


def test_a_code_belongs_to_its_client(fake: FakeCloudController) -> None:
    fake.add_dashboard_client("other-dashboard", "other-secret", "https://other.example.test/cb")
    verifier, challenge = pkce_pair()
    code = get_code(fake, requests.Session(), challenge)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACK,
        "code_verifier": verifier,
    }
    stolen = requests.post(
        f"{fake.uaa_url}/oauth/token",
        data=form,
        auth=("other-dashboard", "other-secret"),
        timeout=T,
    )
    assert stolen.status_code == 401 and stolen.json()["error"] == "invalid_client"
    wrong_secret = requests.post(
        f"{fake.uaa_url}/oauth/token", data=form, auth=(CLIENT, "nope"), timeout=T
    )
    assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "unauthorized"


def test_pkce(fake: FakeCloudController) -> None:
    browser = requests.Session()
    verifier, challenge = pkce_pair()
    other_verifier, _ = pkce_pair()
    mismatch = exchange(fake, get_code(fake, browser, challenge), other_verifier)
    assert mismatch.status_code == 400
    assert mismatch.json() == {
        "error": "invalid_grant",
        "error_description": "Invalid code verifier",
    }
    missing = exchange(fake, get_code(fake, browser, challenge), None)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_grant"
    assert "Code verifier must be provided" in missing.json()["error_description"]
    malformed = exchange(fake, get_code(fake, browser, challenge), "short")
    assert malformed.status_code == 400 and malformed.json()["error"] == "invalid_request"
    unasked = exchange(fake, get_code(fake, browser, None), verifier)  # UAA refuses this too
    assert (
        unasked.status_code == 400
        and "Code verifier not required" in unasked.json()["error_description"]
    )
    plain = get_code(fake, browser, None, code_challenge=verifier, code_challenge_method="plain")
    assert exchange(fake, plain, verifier).status_code == 200
    assert exchange(fake, get_code(fake, browser, None), None).status_code == 200  # no PKCE at all


def test_grant_types_per_client(fake: FakeCloudController) -> None:
    token_url = f"{fake.uaa_url}/oauth/token"
    dashboard = requests.post(
        token_url, data={"grant_type": "client_credentials"}, auth=(CLIENT, SECRET), timeout=T
    )
    assert dashboard.status_code == 400 and dashboard.json()["error"] == "unauthorized_client"
    sd = requests.post(
        token_url,
        data={"grant_type": "client_credentials"},
        auth=("tenant-metrics-sd", "sd-secret"),
        timeout=T,
    )
    assert sd.status_code == 200 and sd.json()["scope"] == "cloud_controller.global_auditor"
    assert "refresh_token" not in sd.json() and "id_token" not in sd.json()
    sd_code = requests.post(
        token_url,
        data={"grant_type": "authorization_code", "code": "x"},
        auth=("tenant-metrics-sd", "sd-secret"),
        timeout=T,
    )
    assert sd_code.status_code == 400 and sd_code.json()["error"] == "unauthorized_client"
    assert (
        "refresh_token" not in exchange(fake, get_code(fake, requests.Session(), None), None).json()
    )


def test_userinfo(fake: FakeCloudController, clock: Clock) -> None:
    url = f"{fake.uaa_url}/userinfo"
    anonymous = requests.get(url, timeout=T)
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"
    garbage = requests.get(url, headers=bearer("nope"), timeout=T)
    assert garbage.status_code == 401 and garbage.json()["error"] == "invalid_token"
    client_token = requests.post(
        f"{fake.uaa_url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("tenant-metrics-sd", "sd-secret"),
        timeout=T,
    ).json()["access_token"]
    machine = requests.get(url, headers=bearer(client_token), timeout=T)
    assert machine.status_code == 403 and machine.json()["error"] == "insufficient_scope"

    user_token(fake)
    second = user_token(fake)  # a second sign-in: now there is a previous one
    previous = requests.get(url, headers=bearer(second), timeout=T).json()["previous_logon_time"]
    assert isinstance(previous, int) and previous > 0
    clock.now += 600
    expired = requests.get(url, headers=bearer(second), timeout=T)
    assert expired.status_code == 401 and expired.json()["error"] == "invalid_token"


def test_userinfo_needs_the_openid_scope(fake: FakeCloudController) -> None:
    fake.add_dashboard_client(
        "no-openid", "s", OTHER_CALLBACK, scopes=("cloud_controller_service_permissions.read",)
    )
    body = other_client_token(fake, "no-openid")
    assert "id_token" not in body and body["scope"] == "cloud_controller_service_permissions.read"
    resp = requests.get(
        f"{fake.uaa_url}/userinfo", headers=bearer(str(body["access_token"])), timeout=T
    )
    assert resp.status_code == 403


ROLE_MATRIX = [
    # (how the user relates to INSTANCE's space/org, expected read, expected manage)
    (("space", SPACE, "space_developer"), True, True),
    (("space", SPACE, "space_manager"), True, False),
    (("space", SPACE, "space_auditor"), True, False),
    (("space", SPACE, "space_supporter"), True, False),
    (("org", ORG, "organization_manager"), True, False),
    (("org", ORG, "organization_auditor"), False, False),
    (("org", ORG, "organization_billing_manager"), False, False),
    (("org", ORG, "organization_user"), False, False),
    (("org", OTHER_ORG, "organization_manager"), False, False),
    (("space", OTHER_SPACE, "space_developer"), False, False),
    (None, False, False),
]


@pytest.mark.parametrize(("grant", "read", "manage"), ROLE_MATRIX)
def test_permissions_follow_roles(
    fake: FakeCloudController, grant: tuple[str, str, str] | None, read: bool, manage: bool
) -> None:
    fake.add_user("bob", "bob-pw")
    if grant is not None:
        kind, guid, role = grant
        (fake.add_space_role if kind == "space" else fake.add_org_role)("bob", guid, role)
    token = user_token(fake, "bob", "bob-pw")
    resp = permissions(fake, token)
    assert resp.status_code == 200 and resp.json() == {"manage": manage, "read": read}
    unknown = permissions(fake, token, "33333333-3333-4333-8333-333333333333")
    assert unknown.status_code == 404
    assert unknown.json()["errors"][0] == {
        "code": 10010,
        "title": "CF-ResourceNotFound",
        "detail": "Service instance not found",
    }
    if grant is not None:  # roles are read at each request: removing one takes effect at once
        fake.remove_role("bob", grant[1], grant[2])
        assert permissions(fake, token).json() == {"manage": False, "read": False}


def test_permissions_need_a_valid_token_with_a_permissions_scope(fake: FakeCloudController) -> None:
    url = f"{fake.url}/v3/service_instances/{INSTANCE}/permissions"
    assert requests.get(url, timeout=T).json()["errors"][0]["title"] == "CF-NotAuthenticated"
    bad = requests.get(url, headers=bearer("nope"), timeout=T)
    assert bad.status_code == 401 and bad.json()["errors"][0]["title"] == "CF-InvalidAuthToken"
    fake.add_dashboard_client("openid-only", "s", OTHER_CALLBACK, scopes=("openid",))
    token = str(other_client_token(fake, "openid-only")["access_token"])
    denied = permissions(fake, token)
    assert denied.status_code == 403
    assert denied.json()["errors"][0] == {
        "code": 10003,
        "title": "CF-NotAuthorized",
        "detail": "You are not authorized to perform the requested action",
    }
    # A dashboard token reads permissions only: the rest of the v3 API needs cloud_controller.read.
    listing = requests.get(
        f"{fake.url}/v3/service_instances", headers=bearer(user_token(fake)), timeout=T
    )
    assert listing.status_code == 403 and listing.json()["errors"][0]["code"] == 10003


def test_logout_ends_the_session_and_never_redirects_elsewhere(fake: FakeCloudController) -> None:
    browser = requests.Session()
    get_code(fake, browser, None)
    out = browser.get(
        f"{fake.login_url}/logout.do",
        params={"redirect": CALLBACK + "?bye=1", "client_id": CLIENT},
        timeout=T,
        allow_redirects=False,
    )
    assert out.status_code == 302 and out.headers["Location"] == CALLBACK + "?bye=1"
    after = browser.get(
        f"{fake.login_url}/oauth/authorize",
        params=authorize_params(None),
        timeout=T,
        allow_redirects=False,
    )
    assert after.headers["Location"] == f"{fake.login_url}/login"  # signed out: the form again
    for params in (
        {"redirect": "https://evil.example/", "client_id": CLIENT},
        {"redirect": CALLBACK + ".evil.example/", "client_id": CLIENT},
        {"redirect": CALLBACK, "client_id": "unknown"},
        {"redirect": CALLBACK},
        {},
    ):
        page = browser.get(
            f"{fake.login_url}/logout.do", params=params, timeout=T, allow_redirects=False
        )
        assert page.status_code == 200 and "Location" not in page.headers
        assert "You have successfully logged out" in page.text


def test_revoking_a_users_tokens_leaves_others_alone(fake: FakeCloudController) -> None:
    fake.add_user("carol", "carol-pw")
    fake.add_space_role("carol", SPACE, "space_auditor")
    alice, carol = user_token(fake), user_token(fake, "carol", "carol-pw")
    fake.revoke_user_tokens("alice@example.test")
    assert permissions(fake, alice).status_code == 401
    assert (
        requests.get(f"{fake.uaa_url}/userinfo", headers=bearer(alice), timeout=T).status_code
        == 401
    )
    assert permissions(fake, carol).json() == {"manage": False, "read": True}
    assert permissions(fake, user_token(fake)).status_code == 200  # signing in again works
    fake.expire_tokens()
    assert permissions(fake, carol).status_code == 401


def test_state_helpers_check_their_input_and_hide_secrets(fake: FakeCloudController) -> None:
    with pytest.raises(ValueError, match="unknown space role"):
        fake.add_space_role("alice@example.test", SPACE, "space_admin")
    with pytest.raises(ValueError, match="unknown org role"):
        fake.add_org_role("alice@example.test", ORG, "space_developer")
    with pytest.raises(KeyError, match="no user"):
        fake.add_space_role("nobody", SPACE, "space_developer")
    with pytest.raises(ValueError, match="exists already"):
        fake.add_user("alice@example.test", "again")
    assert "alice-pw" not in repr(fake.uaa.users) and SECRET not in repr(fake.uaa.clients)
    user_id = fake.add_user("dave", "dave-pw", email="dave@corp.example")
    assert re.fullmatch(r"[0-9a-f-]{36}", user_id)
