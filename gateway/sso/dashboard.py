"""Dashboard SSO in the gateway: the sign-in routes and the session check.

Routes (on the tenant page's sub-application, so they get its security headers):

- ``GET /ui/instances/{guid}``: the instance's dashboard URL. Starts authorization code
  with PKCE at the login server; a login cookie binds ``state`` to this browser.
- ``GET /ui/sso/callback``: checks the login cookie and ``state`` (each state once per
  process; a replay to another process still needs a code UAA has not yet redeemed, and
  codes are single-use), exchanges the code, asks UAA who signed in and Cloud Controller
  whether they may read the instance; then a session cookie and a redirect to ``/ui/``.
- ``POST /ui/sso/logout`` (same origin only): clears the session; the signed-out page
  links to the login server's logout.

``admit(request)`` turns a session cookie into the Tenant a binding of the same instance
would be, asking Cloud Controller again once the last check is ``recheck_seconds`` old.
If Cloud Controller cannot be reached then, the session is kept for one more interval;
after that it is refused (503) until Cloud Controller answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from aiohttp import web

from gateway.auth import Tenant
from gateway.metrics import GatewayMetrics
from gateway.sso import pages
from gateway.sso.cfclient import CloudFoundryAuth, InstanceUnknown, SignInRefused, TokenRejected
from gateway.sso.cookies import (
    MAX_COOKIE_CHARS,
    BadCookie,
    CookieCodec,
    ExpiredCookie,
    LoginState,
    Session,
)
from gateway.sso.oauth import INSTANCE_ID, authorize_url, logout_url, new_state, new_verifier
from gateway.sso.settings import SsoSettings
from tenant_metrics.core.errors import Forbidden, Unauthenticated, UpstreamError
from tenant_metrics.core.labels import Scope

log = logging.getLogger("gateway.sso")

# The instance row for an id (None if unknown); raises UpstreamError if the database fails.
FindInstance = Callable[[str], Awaitable[Any | None]]

SESSION = web.RequestKey("tenant_sso_session", Session)
_SET_COOKIE = web.RequestKey("tenant_sso_set_cookie", str)  # "" clears the session cookie
MAX_CODE = 1024
MAX_USED_STATES = 100_000
MAX_REMEMBERED_INSTANCES = 10_000


class SessionEnded(Unauthenticated):
    """A session cookie that does not sign in (expired, no longer accepted by Cloud Foundry,
    or not ours). Answered without a Basic challenge, so the browser shows no password
    prompt over the tenant page: the page offers to sign in again instead. ``instance`` is
    set when the session simply ran out: the page then signs in again at once."""

    def __init__(self, message: str, instance: str | None = None) -> None:
        super().__init__(message)
        self.instance = instance


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


class DashboardSso:
    def __init__(self, settings: SsoSettings, auth: CloudFoundryAuth, find_instance: FindInstance,
                 metrics: GatewayMetrics, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.auth = auth
        self.find_instance = find_instance
        self.metrics = metrics
        self.clock = clock
        self.codec = CookieCodec(settings.session_secrets, settings.login_seconds)
        secure = settings.secure_cookies
        # __Host-: the browser refuses it unless Secure, Path=/ and no Domain (no subdomain
        # can plant or overwrite it). Plain-HTTP localhost cannot use the prefixes.
        self.session_cookie = "__Host-tm_session" if secure else "tm_session"
        # The login cookie is __Host- too: on a shared apps domain a neighbouring app could
        # otherwise plant its own (Domain=<apps domain>) and sign a victim in as the attacker.
        self.login_cookie = "__Host-tm_sso_login" if secure else "tm_sso_login"
        self._used_states: dict[bytes, float] = {}
        self._rechecks: dict[str, asyncio.Future[Session]] = {}
        self._instances: dict[str, tuple[float, Any | None]] = {}  # instance -> (read at, row)
        self._instance_reads: dict[str, asyncio.Future[Any]] = {}

    # -- routes -------------------------------------------------------------------------
    def add_routes(self, router: web.UrlDispatcher) -> None:
        """On the tenant page's sub-application (paths relative to /ui). Route names start
        with ``sso-``: the page's credential check lets them through."""
        router.add_get("/instances/{instance}", self.start, name="sso-start", allow_head=False)
        router.add_get("/sso/callback", self.callback, name="sso-callback", allow_head=False)
        router.add_post("/sso/logout", self.logout, name="sso-logout")
        router.add_get("/sso/signed-out", self.signed_out, name="sso-signed-out", allow_head=False)

    async def start(self, request: web.Request) -> web.StreamResponse:
        instance = request.match_info["instance"]
        if not INSTANCE_ID.fullmatch(instance):
            return pages.unknown_instance("(malformed id)")
        current = self._current_session(request)
        if current is not None and current.instance == instance:
            return _see_other("/ui/")
        try:
            login_url = (await self.auth.endpoints()).login
        except UpstreamError:
            self.metrics.sso_signins.labels("unavailable").inc()
            return pages.unavailable("Cloud Controller")
        login = LoginState(new_state(), new_verifier(), instance, self.clock())
        resp = _see_other(authorize_url(login_url, self.settings.client_id, self.settings.callback_url,
                                        login.state, login.verifier))
        resp.set_cookie(self.login_cookie, self.codec.seal_login(login), path="/",
                        max_age=int(self.settings.login_seconds), httponly=True, samesite="Lax",
                        secure=self.settings.secure_cookies)
        return resp

    async def callback(self, request: web.Request) -> web.StreamResponse:
        resp = await self._callback(request)
        # Whatever happened, this sign-in attempt is over.
        resp.del_cookie(self.login_cookie, path="/", secure=self.settings.secure_cookies,
                        httponly=True, samesite="Lax")
        return resp

    async def _callback(self, request: web.Request) -> web.Response:
        now = self.clock()
        query = request.query
        cookie = request.cookies.get(self.login_cookie)
        if not cookie:
            return self._refused(None, "This sign-in was not started in this browser, or it has already been used.")
        try:
            login = self.codec.open_login(cookie, now)
        except ExpiredCookie as exc:
            return self._refused(exc.instance, "The sign-in took too long.")
        except BadCookie:
            return self._refused(None, "This sign-in was not started in this browser.")
        state = query.get("state", "")
        if not state or not hmac.compare_digest(_digest(state), _digest(login.state)):
            return self._refused(login.instance, "The sign-in answer does not belong to this browser's sign-in.")
        if not self._first_use(login.state, now):
            return self._refused(login.instance, "This sign-in answer has already been used.")
        if "error" in query:  # only now: an answer with our state is the login server's own
            return self._refused(login.instance, "Cloud Foundry's login server did not sign you in "
                                                 f"({query['error'][:100]}).")
        code = query.get("code", "")
        if not code or len(code) > MAX_CODE:
            return self._refused(login.instance, "The login server sent no authorization code.")
        try:
            grant = await self.auth.exchange(code, login.verifier)
            user = await self.auth.user(grant.access_token)
            permissions = await self.auth.permissions(grant.access_token, login.instance)
        except (SignInRefused, TokenRejected):
            return self._refused(login.instance, "Cloud Foundry's UAA did not accept this sign-in (it may "
                                                 "have been used already, or taken too long).")
        except InstanceUnknown:
            self.metrics.sso_signins.labels("forbidden").inc()
            return pages.unknown_instance(login.instance)
        except UpstreamError:
            self.metrics.sso_signins.labels("unavailable").inc()
            return pages.unavailable("Cloud Foundry's UAA and Cloud Controller")
        if not permissions.read:
            self.metrics.sso_signins.labels("forbidden").inc()
            log.info("dashboard sign-in refused: no read permission",
                     extra={"user_id": user.user_id, "instance": login.instance})
            return pages.forbidden(user.user_name, login.instance)
        try:
            row = await self.find_instance(login.instance)
        except UpstreamError:
            self.metrics.sso_signins.labels("unavailable").inc()
            return pages.unavailable("the gateway's database")
        if row is None:
            self.metrics.sso_signins.labels("forbidden").inc()
            return pages.unknown_instance(login.instance)
        try:
            tenant = Tenant.for_instance(row, "", user.user_name)
        except Unauthenticated:  # an instance row without a usable scope or guid
            self.metrics.sso_signins.labels("forbidden").inc()
            return pages.unknown_instance(login.instance)
        lifetime = self.settings.max_session_seconds
        if grant.expires_in > 0:
            lifetime = min(lifetime, grant.expires_in)
        session = Session(secrets.token_urlsafe(16), login.instance, tenant.scope.value, tenant.value,
                          user.user_id, user.user_name, grant.access_token, now, now + lifetime, now)
        self.metrics.sso_signins.labels("ok").inc()
        log.info("dashboard sign-in", extra={"user_id": user.user_id, "username": user.user_name,
                                             "instance": login.instance, "scope": tenant.scope.value})
        sealed = self.codec.seal_session(session)
        if len(sealed) > MAX_COOKIE_CHARS:  # browsers would drop it and the user would loop
            self.metrics.sso_signins.labels("unavailable").inc()
            log.error("dashboard sign-in: the session cookie would be too large for browsers",
                      extra={"chars": len(sealed)})
            return pages.page(502, "Sign-in could not be completed",
                              "Cloud Foundry's UAA issued a token too large to keep in a browser cookie.",
                              "Tell the platform operators; use a service key meanwhile.", extra_id="sso-too-large")
        resp = _see_other("/ui/")
        self._set_session(resp, sealed, session.expires_at - now)
        return resp

    async def logout(self, request: web.Request) -> web.StreamResponse:
        if not self.same_origin(request):
            return pages.page(403, "Request refused", "Sign-out must come from the tenant page itself.",
                              extra_id="sso-cross-site")
        resp = _see_other("/ui/sso/signed-out")
        self._clear_session(resp)
        return resp

    async def signed_out(self, request: web.Request) -> web.StreamResponse:
        try:
            login_url = (await self.auth.endpoints()).login
        except UpstreamError:
            return pages.signed_out(None)
        return pages.signed_out(logout_url(login_url, self.settings.client_id,
                                           self.settings.public_url + "/ui/sso/signed-out"))

    # -- sessions -----------------------------------------------------------------------
    def has_cookie(self, request: web.Request) -> bool:
        return self.session_cookie in request.cookies

    def same_origin(self, request: web.Request) -> bool:
        """A state-changing request made by our own page: its Origin is ours (browsers send
        Origin with every POST, and fetch() with every cross-origin request)."""
        origin = request.headers.get("Origin")  # not a secret: a plain comparison
        return origin is not None and origin.strip().lower() == self.settings.origin

    async def admit(self, request: web.Request) -> Tenant:
        """The tenant of the request's session cookie; Unauthenticated for a forged, changed
        or expired one, Forbidden when the user lost access or a cross-site request."""
        now = self.clock()
        try:
            session = self.codec.open_session(request.cookies.get(self.session_cookie, ""), now)
        except ExpiredCookie as exc:
            request[_SET_COOKIE] = ""
            again = exc.instance if INSTANCE_ID.fullmatch(exc.instance) else None
            raise SessionEnded("your sign-in has expired: open the dashboard link to sign in again",
                               again) from None
        except BadCookie:
            request[_SET_COOKIE] = ""  # not ours (or under a retired SESSION_SECRET): drop it
            raise SessionEnded("invalid session") from None
        if request.method not in ("GET", "HEAD") and not self.same_origin(request):
            raise Forbidden("cross-site request refused: a session is used only by the tenant page itself")
        if now - session.checked_at >= self.settings.recheck_seconds:
            session = await self._shared_recheck(request, session)
        current = await self._instance_now(session)
        if current is None:
            request[_SET_COOKIE] = ""
            raise Forbidden("this service instance no longer exists")
        request[SESSION] = session
        scope, value = current
        return Tenant(f"sso:{session.user_id}:{session.instance}", session.user_name, scope, value)

    async def _instance_now(self, session: Session) -> tuple[Scope, str] | None:
        """The instance's scope and label value as the database has them now, read at most
        every ``instance_ttl_seconds`` per worker (as fresh as a binding's, so a deprovision or
        a plan change shows within seconds, not at the next recheck); the session's own copy,
        from its last check, while the database cannot be reached; None once it is gone."""
        now = time.monotonic()
        hit = self._instances.get(session.instance)
        if hit is not None and now - hit[0] < self.settings.instance_ttl_seconds:
            row = hit[1]
        else:
            pending = self._instance_reads.get(session.instance)
            if pending is None:
                pending = asyncio.ensure_future(self.find_instance(session.instance))
                self._instance_reads[session.instance] = pending
                pending.add_done_callback(partial(self._read_settled, session.instance))
            try:
                row = await asyncio.shield(pending)
            except UpstreamError:
                return Scope(session.scope), session.value
            if len(self._instances) >= MAX_REMEMBERED_INSTANCES:
                self._instances.clear()
            self._instances[session.instance] = (time.monotonic(), row)
        if row is None:
            return None
        try:
            tenant = Tenant.for_instance(row, "", "")
        except Unauthenticated:
            return None
        return tenant.scope, tenant.value

    def _read_settled(self, instance: str, future: asyncio.Future[Any]) -> None:
        if self._instance_reads.get(instance) is future:
            del self._instance_reads[instance]
        if not future.cancelled():
            future.exception()

    async def _shared_recheck(self, request: web.Request, session: Session) -> Session:
        pending = self._rechecks.get(session.sid)
        if pending is None:
            pending = asyncio.ensure_future(self._recheck(session))
            self._rechecks[session.sid] = pending
            pending.add_done_callback(partial(self._settled, session.sid))
        try:
            fresh = await asyncio.shield(pending)
        except (Unauthenticated, Forbidden):
            request[_SET_COOKIE] = ""
            raise
        if fresh.checked_at != session.checked_at:
            request[_SET_COOKIE] = self.codec.seal_session(fresh)
        return fresh

    def _settled(self, sid: str, future: asyncio.Future[Session]) -> None:
        if self._rechecks.get(sid) is future:
            del self._rechecks[sid]
        if not future.cancelled():
            future.exception()  # retrieved, even if every waiter has gone

    async def _recheck(self, session: Session) -> Session:
        now = self.clock()
        try:
            permissions = await self.auth.permissions(session.token, session.instance)
            row = await self.find_instance(session.instance) if permissions.read else None
        except TokenRejected:
            self.metrics.sso_rechecks.labels("ended").inc()
            raise SessionEnded("Cloud Foundry no longer accepts your sign-in: open the dashboard link "
                               "to sign in again") from None
        except InstanceUnknown:
            self.metrics.sso_rechecks.labels("forbidden").inc()
            raise Forbidden("this service instance no longer exists") from None
        except UpstreamError:
            if now - session.checked_at < 2 * self.settings.recheck_seconds:
                self.metrics.sso_rechecks.labels("unavailable").inc()
                log.warning("dashboard session kept: permissions could not be checked",
                            extra={"user_id": session.user_id, "instance": session.instance})
                return session
            raise
        if not permissions.read or row is None:
            self.metrics.sso_rechecks.labels("forbidden").inc()
            log.info("dashboard session ended: no read permission any more",
                     extra={"user_id": session.user_id, "instance": session.instance})
            raise Forbidden("you no longer have a role that lets you see this service instance")
        try:
            tenant = Tenant.for_instance(row, "", session.user_name)
        except Unauthenticated:
            raise Forbidden("this service instance can no longer be opened") from None
        self.metrics.sso_rechecks.labels("ok").inc()
        return Session(session.sid, session.instance, tenant.scope.value, tenant.value, session.user_id,
                       session.user_name, session.token, session.issued_at, session.expires_at, now)

    async def on_response_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        """Set (after a recheck) or clear (after a refusal) the session cookie on any answer,
        streamed ones included: this runs just before the headers go out."""
        if request.get(SESSION) is not None:
            # An answer for one signed-in user: never kept by a shared cache (a cookie, unlike
            # an Authorization header, does not stop one by itself).
            response.headers["Cache-Control"] = "private, no-store"
            response.headers.add("Vary", "Cookie")
        value = request.get(_SET_COOKIE)
        if value is None:
            return
        # aiohttp has turned the response's cookies into headers by now: add the header.
        carrier = web.Response()
        if value:
            session = request.get(SESSION)
            remaining = session.expires_at - self.clock() if session is not None else 0
            self._set_session(carrier, value, remaining)
        else:
            self._clear_session(carrier)
        for morsel in carrier.cookies.values():
            response.headers.add("Set-Cookie", morsel.output(header="").strip())

    # -- helpers ------------------------------------------------------------------------
    def _current_session(self, request: web.Request) -> Session | None:
        cookie = request.cookies.get(self.session_cookie)
        if not cookie:
            return None
        try:
            return self.codec.open_session(cookie, self.clock())
        except (BadCookie, ExpiredCookie):
            return None

    def _first_use(self, state: str, now: float) -> bool:
        key = _digest(state)
        expiry = self._used_states.get(key)
        if expiry is not None and expiry > now:
            return False
        if len(self._used_states) >= MAX_USED_STATES:
            for old in [k for k, v in self._used_states.items() if v <= now]:
                del self._used_states[old]
            if len(self._used_states) >= MAX_USED_STATES:
                # A flood of sign-ins: forget rather than grow. Codes stay single-use at UAA.
                self._used_states.clear()
        self._used_states[key] = now + self.settings.login_seconds
        return True

    def _refused(self, instance: str | None, reason: str) -> web.Response:
        self.metrics.sso_signins.labels("refused").inc()
        log.info("dashboard sign-in refused", extra={"reason": reason, "instance": instance})
        return pages.start_again(instance, reason)

    def _set_session(self, resp: web.StreamResponse, value: str, max_age: float) -> None:
        resp.set_cookie(self.session_cookie, value, path="/", max_age=max(0, int(max_age)), httponly=True,
                        samesite="Lax", secure=self.settings.secure_cookies)

    def _clear_session(self, resp: web.StreamResponse) -> None:
        resp.del_cookie(self.session_cookie, path="/", secure=self.settings.secure_cookies, httponly=True,
                        samesite="Lax")


def _see_other(location: str) -> web.Response:
    resp = web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})
    return resp
