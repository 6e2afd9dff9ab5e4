"""The dashboard SSO contract the broker and the gateway share: where the gateway serves an
instance's dashboard and the OAuth callback, what a UAA client id may look like, and where
plain http is allowed (the redirect URI carries an authorization code)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

SSO_CALLBACK_PATH = "/ui/sso/callback"
INSTANCE_DASHBOARD_PATH = "/ui/instances/"
CLIENT_ID_SHAPE = re.compile(r"[A-Za-z0-9._:-]{1,255}")
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback_http(url: str) -> bool:
    """Plain http to this host only: the one place an authorization code may travel unencrypted."""
    parts = urlsplit(url)
    return parts.scheme == "http" and (parts.hostname or "") in LOOPBACK_HOSTS
