"""OAuth 2 pieces of the sign-in (pure): state, PKCE (RFC 7636, S256), the authorize URL."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from urllib.parse import urlencode

SCOPES = ("openid", "cloud_controller_service_permissions.read")
# An instance guid as Cloud Controller hands it to brokers; anything else never reaches a URL.
INSTANCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def new_state() -> str:
    return secrets.token_urlsafe(32)


def new_verifier() -> str:
    """43-128 characters of the unreserved set: 64 random bytes, base64url."""
    return secrets.token_urlsafe(64)


def challenge_of(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_url(login_url: str, client_id: str, redirect_uri: str, state: str, verifier: str) -> str:
    query = urlencode({
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(SCOPES),
        "state": state,
        "code_challenge": challenge_of(verifier),
        "code_challenge_method": "S256",
    })
    return f"{login_url}/oauth/authorize?{query}"


def logout_url(login_url: str, client_id: str, redirect: str) -> str:
    return f"{login_url}/logout.do?{urlencode({'client_id': client_id, 'redirect': redirect})}"
