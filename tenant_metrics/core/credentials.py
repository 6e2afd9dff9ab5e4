"""Broker-issued gateway credentials: generate, derive, hash, verify. Pure, no I/O.

A password is ``HMAC-SHA256(key, nonce)``: the DB keeps the random nonce and the
password's SHA-256, never the password and never the key. So an identical repeat of a
bind returns the same password (derived again from the nonce), a stolen DB yields no
usable credential, and the gateway verifies with the hash alone, without the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

USERNAME_PREFIX = "tm-"
NONCE_BYTES = 32
# 256 bits of entropy; a fast hash is enough when guessing is hopeless.
PASSWORD_BYTES = 32
MIN_KEY_BYTES = 16


@dataclass(frozen=True, slots=True)
class IssuedCredentials:
    username: str
    password: str = field(repr=False)
    secret_nonce: str = field(repr=False)
    password_sha256: str = field(repr=False)


def derive_key(material: str) -> bytes:
    """Turn the operator's secret (CREDENTIALS_KEY, else the broker password) into a key."""
    if len(material.encode()) < MIN_KEY_BYTES:
        raise ValueError(f"credentials key material must be at least {MIN_KEY_BYTES} bytes")
    return hashlib.sha256(b"tenant-metrics/credentials/v1\x00" + material.encode()).digest()


def new_username() -> str:
    return USERNAME_PREFIX + secrets.token_hex(12)


def new_nonce() -> str:
    return secrets.token_hex(NONCE_BYTES)


def derive_password(key: bytes, nonce: str) -> str:
    digest = hmac.new(key, b"password\x00" + nonce.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:PASSWORD_BYTES]).rstrip(b"=").decode()


def hash_password(password: str) -> str:
    return hashlib.sha256(password.encode("utf-8", "surrogatepass")).hexdigest()


def issue(key: bytes, username: str | None = None, nonce: str | None = None) -> IssuedCredentials:
    """New credentials, or the same ones again when given the stored username and nonce."""
    username = username or new_username()
    nonce = nonce or new_nonce()
    password = derive_password(key, nonce)
    return IssuedCredentials(username, password, nonce, hash_password(password))


def verify(password: str, password_sha256: str) -> bool:
    """Constant-time check of a presented password against the stored hash."""
    return hmac.compare_digest(hash_password(password), password_sha256)
