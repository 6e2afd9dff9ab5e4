"""What the dashboard asks Cloud Controller and UAA (thin async I/O, every call bounded).

Only what Dashboard SSO needs: Cloud Controller's ``GET /`` (where UAA and the login
server are), UAA's ``/oauth/token`` (code for token) and ``/userinfo``, and Cloud
Controller's ``GET /v3/service_instances/:guid/permissions``. Tokens are opaque strings:
never decoded, never logged.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

from gateway.sso.settings import SsoSettings
from tenant_metrics.core.errors import UpstreamError, UpstreamTimeout

log = logging.getLogger("gateway.sso")
DISCOVERY_SECONDS = 3600.0
DISCOVERY_FAILURE_SECONDS = 5.0  # a failed discovery is not retried for this long
MAX_REPLY_BYTES = 256 * 1024


class SignInRefused(Exception):
    """UAA refused the sign-in (a code used twice, expired or not ours): start again."""


class TokenRejected(Exception):
    """The user's token is no longer accepted (expired or revoked): the session ends."""


class InstanceUnknown(Exception):
    """Cloud Controller has no such service instance."""


@dataclass(frozen=True, slots=True)
class Endpoints:
    login: str
    uaa: str


@dataclass(frozen=True, slots=True)
class Grant:
    access_token: str = field(repr=False)
    expires_in: float


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    user_name: str


@dataclass(frozen=True, slots=True)
class Permissions:
    read: bool
    manage: bool


def _href(links: Any, name: str) -> str:
    try:
        href = links[name]["href"]
    except (KeyError, TypeError) as exc:
        raise UpstreamError(f"Cloud Controller's GET / has no links.{name}") from exc
    if not isinstance(href, str) or not href.startswith(("https://", "http://")):
        raise UpstreamError(f"Cloud Controller's links.{name} is not a URL")
    return href.rstrip("/")


class CloudFoundryAuth:
    """The dashboard's client of Cloud Controller and UAA (one aiohttp session per worker)."""

    def __init__(self, settings: SsoSettings) -> None:
        self.settings = settings
        self._http: aiohttp.ClientSession | None = None
        self._endpoints: tuple[float, Endpoints] | None = None
        self._discovering: asyncio.Future[Endpoints] | None = None
        self._discovery_failed: tuple[float, UpstreamError] | None = None
        pair = f"{settings.client_id}:{settings.client_secret}".encode()
        self._client_auth = "Basic " + base64.b64encode(pair).decode("ascii")

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.http_timeout_seconds,
                                        connect=min(2.0, self.settings.http_timeout_seconds))
        self._http = aiohttp.ClientSession(timeout=timeout, raise_for_status=False)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def _call(self, what: str, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
        """One request; the status and the JSON body (None if not JSON). Hangs and refusals
        become UpstreamError naming ``what``, never the URL's query or a token."""
        assert self._http is not None, "start() first"
        try:
            async with self._http.request(method, url, allow_redirects=False, **kwargs) as resp:
                raw = await resp.content.read(MAX_REPLY_BYTES + 1)
                if len(raw) > MAX_REPLY_BYTES:
                    raise UpstreamError(f"{what} answered more than {MAX_REPLY_BYTES} bytes")
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                return resp.status, body
        except TimeoutError as exc:
            raise UpstreamTimeout(f"{what} did not answer within {self.settings.http_timeout_seconds:g}s") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"{what} cannot be reached ({type(exc).__name__})") from exc

    async def endpoints(self) -> Endpoints:
        """The login server and UAA, from Cloud Controller's ``GET /``: remembered an hour, and
        kept past that while Cloud Controller cannot be asked. Concurrent callers share one
        request, so a hung Cloud Controller costs each of them one timeout at most, and a
        failure is not retried for DISCOVERY_FAILURE_SECONDS."""
        now = time.monotonic()
        known = self._endpoints
        if known is not None and now - known[0] < DISCOVERY_SECONDS:
            return known[1]
        failed = self._discovery_failed
        if failed is not None and now - failed[0] < DISCOVERY_FAILURE_SECONDS:
            if known is not None:
                return known[1]
            raise failed[1]
        if self._discovering is None:
            self._discovering = asyncio.ensure_future(self._discover())
            self._discovering.add_done_callback(self._discovered)
        try:
            return await asyncio.shield(self._discovering)
        except UpstreamError:
            if known is not None:
                log.warning("Cloud Controller's GET / failed: using the login server and UAA found earlier")
                return known[1]
            raise

    async def _discover(self) -> Endpoints:
        try:
            status, body = await self._call("Cloud Controller", "GET", self.settings.cf_api_url + "/",
                                            headers={"Accept": "application/json"})
            if status != 200 or not isinstance(body, dict):
                raise UpstreamError(f"Cloud Controller's GET / answered {status}")
            links = body.get("links")
            found = Endpoints(login=_href(links, "login"), uaa=_href(links, "uaa"))
        except UpstreamError as exc:
            self._discovery_failed = (time.monotonic(), exc)
            raise
        self._endpoints = (time.monotonic(), found)
        self._discovery_failed = None
        return found

    def _discovered(self, future: asyncio.Future[Endpoints]) -> None:
        self._discovering = None
        if not future.cancelled():
            future.exception()

    async def exchange(self, code: str, verifier: str) -> Grant:
        uaa = (await self.endpoints()).uaa
        status, body = await self._call(
            "UAA", "POST", uaa + "/oauth/token",
            data={"grant_type": "authorization_code", "code": code,
                  "redirect_uri": self.settings.callback_url, "code_verifier": verifier},
            headers={"Accept": "application/json", "Authorization": self._client_auth},
        )
        if status == 200 and isinstance(body, dict) and isinstance(body.get("access_token"), str):
            expires = body.get("expires_in")
            lifetime = float(expires) if isinstance(expires, (int, float)) and expires > 0 else 0.0
            return Grant(body["access_token"], lifetime)
        error = body.get("error") if isinstance(body, dict) else None
        if status in (400, 401) and error in ("invalid_grant", "invalid_request"):
            raise SignInRefused(f"UAA refused the sign-in ({error})")
        if status == 401:
            # Our own client is not accepted: an operator's problem, not the user's.
            log.error("UAA refused the dashboard client's credentials: check DASHBOARD_CLIENT_ID/SECRET "
                      "and that the broker was registered or updated with SSO on",
                      extra={"status": status, "error": error})
        raise UpstreamError(f"UAA's token endpoint answered {status}")

    async def user(self, token: str) -> User:
        uaa = (await self.endpoints()).uaa
        status, body = await self._call("UAA", "GET", uaa + "/userinfo",
                                        headers={"Authorization": f"bearer {token}", "Accept": "application/json"})
        if status == 401:
            raise TokenRejected("token not accepted by UAA")
        if status != 200 or not isinstance(body, dict):
            raise UpstreamError(f"UAA's userinfo answered {status}")
        user_id = body.get("user_id") or body.get("sub")
        name = body.get("user_name") or body.get("email") or user_id
        if not isinstance(user_id, str) or not isinstance(name, str):
            raise UpstreamError("UAA's userinfo has no user_id")
        return User(user_id, name)

    async def permissions(self, token: str, instance: str) -> Permissions:
        url = f"{self.settings.cf_api_url}/v3/service_instances/{quote(instance, safe='')}/permissions"
        status, body = await self._call("Cloud Controller", "GET", url,
                                        headers={"Authorization": f"bearer {token}", "Accept": "application/json"})
        if status == 401:
            raise TokenRejected("token not accepted by Cloud Controller")
        if status == 404:
            raise InstanceUnknown(instance)
        if status == 403:
            # A token without the permissions scope: the UAA client lacks it (registration).
            log.error("Cloud Controller refused the permissions check (403): the dashboard client "
                      "needs the scope cloud_controller_service_permissions.read")
            return Permissions(read=False, manage=False)
        if status != 200 or not isinstance(body, dict):
            raise UpstreamError(f"Cloud Controller's permissions answered {status}")
        return Permissions(read=body.get("read") is True, manage=body.get("manage") is True)
