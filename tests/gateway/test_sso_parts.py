"""Dashboard SSO's pure parts: cookies, PKCE and the authorize URL, settings."""

from __future__ import annotations

import base64
import json
import string
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.fernet import Fernet

from gateway.sso.cookies import BadCookie, CookieCodec, ExpiredCookie, LoginState, Session
from gateway.sso.oauth import SCOPES, authorize_url, challenge_of, new_verifier
from gateway.sso.settings import sso_settings
from tenant_metrics.core.errors import ConfigError

SECRET = "0123456789abcdef0123456789abcdef-sso"
OLD_SECRET = "fedcba9876543210fedcba9876543210-old"


def _session(now: float = 1000.0, lifetime: float = 3600.0) -> Session:
    return Session("sid", "inst-1", "space", "space-a", "uid-1", "alice", "token-xyz", now, now + lifetime, now)


def test_a_session_cookie_round_trips_and_hides_the_token() -> None:
    codec = CookieCodec((SECRET,), 600)
    cookie = codec.seal_session(_session())
    assert "token-xyz" not in cookie and "alice" not in cookie  # encrypted, not just signed
    assert codec.open_session(cookie, 1001.0) == _session()
    assert "token-xyz" not in repr(_session())


def test_a_changed_cookie_is_refused() -> None:
    codec = CookieCodec((SECRET,), 600)
    cookie = codec.seal_session(_session())
    raw = bytearray(base64.urlsafe_b64decode(cookie))
    for position in (10, len(raw) // 2, len(raw) - 1):  # timestamp, ciphertext, signature
        changed = bytearray(raw)
        changed[position] ^= 1
        with pytest.raises(BadCookie):
            codec.open_session(base64.urlsafe_b64encode(bytes(changed)).decode(), 1001.0)
    for junk in ("", "x", "a" * 5000, cookie + "A", "not base64 !!"):
        with pytest.raises(BadCookie):
            codec.open_session(junk, 1001.0)


def test_a_cookie_under_another_key_or_purpose_is_refused() -> None:
    codec = CookieCodec((SECRET,), 600)
    other = CookieCodec((OLD_SECRET,), 600)
    with pytest.raises(BadCookie):
        codec.open_session(other.seal_session(_session()), 1001.0)
    # A login cookie cannot pass for a session, even under the same secret.
    login = codec.seal_login(LoginState("state", "verifier", "inst-1", 1000.0))
    with pytest.raises(BadCookie):
        codec.open_session(login, 1001.0)
    # A forged payload sealed with a key made from the secret the naive way is refused too.
    naive = Fernet(base64.urlsafe_b64encode(SECRET.encode()[:32]))
    forged = naive.encrypt(json.dumps({"sid": "x"}).encode()).decode()
    with pytest.raises(BadCookie):
        codec.open_session(forged, 1001.0)


def test_secret_rotation_keeps_old_sessions_and_seals_with_the_new_key() -> None:
    old = CookieCodec((OLD_SECRET,), 600)
    rotated = CookieCodec((SECRET, OLD_SECRET), 600)
    assert rotated.open_session(old.seal_session(_session()), 1001.0) == _session()
    with pytest.raises(BadCookie):  # new cookies use the first secret only
        old.open_session(rotated.seal_session(_session()), 1001.0)


def test_expiry_is_told_apart_from_forgery() -> None:
    codec = CookieCodec((SECRET,), 600)
    cookie = codec.seal_session(_session(now=1000.0, lifetime=60.0))
    with pytest.raises(ExpiredCookie) as caught:
        codec.open_session(cookie, 1060.0)
    assert caught.value.instance == "inst-1"
    login = codec.seal_login(LoginState("s", "v", "inst-2", 1000.0))
    assert codec.open_login(login, 1599.0).instance == "inst-2"
    with pytest.raises(ExpiredCookie):
        codec.open_login(login, 1601.0)
    with pytest.raises(ExpiredCookie):  # from the future: a clock that jumped, refused as well
        codec.open_login(login, 900.0)


def test_pkce_matches_rfc_7636_and_verifiers_are_well_formed() -> None:
    # RFC 7636, appendix B.
    assert challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    unreserved = set(string.ascii_letters + string.digits + "-._~")
    verifiers = {new_verifier() for _ in range(50)}
    assert len(verifiers) == 50
    for v in verifiers:
        assert 43 <= len(v) <= 128 and set(v) <= unreserved


def test_the_authorize_url_asks_for_code_with_pkce_and_the_two_scopes() -> None:
    url = authorize_url("https://login.sys.example.org", "tm-dash", "https://gw.example.org/ui/sso/callback",
                        "st&ate", "v" * 43)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "login.sys.example.org", "/oauth/authorize")
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert q == {
        "response_type": "code", "client_id": "tm-dash", "redirect_uri": "https://gw.example.org/ui/sso/callback",
        "scope": "openid cloud_controller_service_permissions.read", "state": "st&ate",
        "code_challenge": challenge_of("v" * 43), "code_challenge_method": "S256",
    }
    assert SCOPES == ("openid", "cloud_controller_service_permissions.read")


GOOD = {
    "DASHBOARD_CLIENT_ID": "tenant-metrics-dashboard",
    "DASHBOARD_CLIENT_SECRET": "a-long-dashboard-client-secret",
    "CF_API_URL": "https://api.sys.example.org/",
    "GATEWAY_PUBLIC_URL": "https://metrics.example.org",
    "SESSION_SECRET": SECRET,
}


def test_sso_is_off_without_a_client_id_and_read_fully_with_one() -> None:
    assert sso_settings({}) is None
    settings = sso_settings(GOOD)
    assert settings is not None
    assert settings.cf_api_url == "https://api.sys.example.org"
    assert settings.callback_url == "https://metrics.example.org/ui/sso/callback"
    assert settings.origin == "https://metrics.example.org"
    assert settings.secure_cookies and settings.recheck_seconds == 300
    assert SECRET not in repr(settings) and "a-long-dashboard-client-secret" not in repr(settings)
    local = sso_settings({**GOOD, "GATEWAY_PUBLIC_URL": "http://127.0.0.1:8090", "SSO_RECHECK_SECONDS": "60"})
    assert local is not None and not local.secure_cookies and local.recheck_seconds == 60


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"SESSION_SECRET": ""}, "SESSION_SECRET is required"),
        ({"SESSION_SECRET": "short"}, "SESSION_SECRET must be at least 32"),
        ({"SESSION_SECRET": "a" * 64}, "distinct"),
        ({"SESSION_SECRET": SECRET + ",weak"}, "SESSION_SECRET must be at least 32"),
        ({"DASHBOARD_CLIENT_SECRET": ""}, "DASHBOARD_CLIENT_SECRET is required"),
        ({"CF_API_URL": ""}, "CF_API_URL is required"),
        ({"GATEWAY_PUBLIC_URL": "http://metrics.example.org"}, "GATEWAY_PUBLIC_URL must use https"),
        ({"GATEWAY_PUBLIC_URL": "https://metrics.example.org/?x=1"}, "without query"),
        ({"DASHBOARD_CLIENT_ID": "bad id!"}, "DASHBOARD_CLIENT_ID must be"),
        ({"SSO_SESSION_MAX_SECONDS": "86400"}, "at most 28800"),
    ],
)
def test_bad_sso_settings_are_named(change: dict[str, str], complaint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        sso_settings({**GOOD, **change})
    assert any(complaint in p for p in caught.value.problems), caught.value.problems


def test_every_sso_problem_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        sso_settings({"DASHBOARD_CLIENT_ID": "x"})
    text = " ".join(caught.value.problems)
    for name in ("DASHBOARD_CLIENT_SECRET", "CF_API_URL", "GATEWAY_PUBLIC_URL", "SESSION_SECRET"):
        assert name in text
