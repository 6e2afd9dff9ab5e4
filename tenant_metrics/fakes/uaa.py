"""The UAA and its login server, as sd (client_credentials) and a dashboard (authorization code
with PKCE) see them. ``FakeCloudController`` serves it: token and userinfo under ``/uaa``, the
browser side (authorize, login form, logout) under ``/login``. docs/external-apis.md § Dashboard
SSO describes the real behaviour this follows.

Tokens and codes are random opaque strings; state lives in memory behind the server's lock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, urlencode

from tenant_metrics.fakes._http import Reply, Request

DASHBOARD_SCOPES = ("openid", "cloud_controller_service_permissions.read")
SESSION_COOKIE = "JSESSIONID"
CSRF_COOKIE = "X-Uaa-Csrf"
LOGIN_FAILURE_TEXT = "Unable to verify email or password. Please try again."
# RFC 7636 §4.1 (and UAA's PkceValidationService): 43-128 characters of the unreserved set.
PKCE_PATTERN = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
PKCE_FORMAT = "length must between 43 and 128 and use only [A-Z],[a-z],[0-9],_,.,-,~ characters."


@dataclass(frozen=True, slots=True)
class OAuthClient:
    client_id: str
    secret: str = field(repr=False)
    grant_types: tuple[str, ...]
    scopes: tuple[str, ...] = ()  # what it may ask for on a user's behalf
    authorities: tuple[str, ...] = ()  # what a client_credentials token of its own carries
    redirect_uri: str | None = None


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    user_name: str
    password: str = field(repr=False)
    email: str


@dataclass(frozen=True, slots=True)
class IssuedToken:
    client_id: str
    user_id: str | None  # None: a client_credentials token
    scopes: tuple[str, ...]
    expires_at: float


@dataclass(frozen=True, slots=True)
class _Code:
    client_id: str
    user_id: str
    requested_redirect_uri: str | None  # as sent to authorize; the token request must repeat it
    scopes: tuple[str, ...]
    challenge: str | None
    challenge_method: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class _LoginSession:
    user_id: str | None  # None until the user signs in
    saved_authorize_query: str | None = None


def _oauth_error(status: int, error: str, description: str, **headers: str) -> Reply:
    return Reply.json(status, {"error": error, "error_description": description}, headers=headers)


def _page(status: int, title: str, body: str, **headers: str) -> Reply:
    doc = (
        f"<!DOCTYPE html><html><head><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return Reply(status, doc.encode(), "text/html;charset=UTF-8", dict(headers))


def _redirect(location: str, **headers: str) -> Reply:
    return Reply(302, b"", "text/html", {"Location": location, **headers})


def _with_params(uri: str, params: dict[str, str]) -> str:
    return f"{uri}{'&' if '?' in uri else '?'}{urlencode(params)}"


def _cookie(name: str, value: str, *, max_age: int | None = None) -> str:
    expiry = f"; Max-Age={max_age}" if max_age is not None else ""
    return f"{name}={value}; Path=/login; HttpOnly; SameSite=Lax{expiry}"


def _cookies(req: Request) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(req.headers.get("cookie", ""))
    except CookieError:
        return {}
    return {key: morsel.value for key, morsel in jar.items()}


def _form(req: Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(req.body.decode(errors="replace")).items()}


def _split_scopes(raw: str) -> tuple[str, ...]:
    return tuple(s for s in re.split(r"[\s,]+", raw) if s)


def _pkce_matches(verifier: str, challenge: str, method: str) -> bool:
    if method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        verifier = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return secrets.compare_digest(verifier, challenge)


class FakeUaa:
    """UAA's clients, users, tokens, codes and login sessions, and the routes that use them."""

    def __init__(
        self,
        lock: threading.RLock,
        clock: Callable[[], float],
        base_url: Callable[[], str],
        *,
        token_ttl: float,
        user_token_ttl: float,
        code_ttl: float,
    ) -> None:
        self.lock = lock
        self.clock = clock
        self.base_url = base_url
        self.token_ttl = token_ttl
        self.user_token_ttl = user_token_ttl
        self.code_ttl = code_ttl
        self.clients: dict[str, OAuthClient] = {}
        self.users: dict[str, User] = {}  # by user_name
        self.tokens: dict[str, IssuedToken] = {}
        self.tokens_issued = 0
        self.codes: dict[str, _Code] = {}
        self.sessions: dict[str, _LoginSession] = {}
        self.logon_times: dict[str, list[int]] = {}  # user_id -> epoch ms of each sign-in

    # -- state ----------------------------------------------------------------------------
    def add_client(self, client: OAuthClient) -> None:
        with self.lock:
            self.clients[client.client_id] = client

    def add_user(self, user_name: str, password: str, email: str | None) -> str:
        user = User(str(uuid.uuid4()), user_name, password, email or self._default_email(user_name))
        with self.lock:
            if user_name in self.users:
                raise ValueError(f"user {user_name!r} exists already")
            self.users[user_name] = user
        return user.user_id

    @staticmethod
    def _default_email(user_name: str) -> str:
        return user_name if "@" in user_name else f"{user_name}@example.org"

    def user(self, user_name: str) -> User:
        with self.lock:
            try:
                return self.users[user_name]
            except KeyError:
                raise KeyError(f"no user {user_name!r}; add_user first") from None

    def revoke_user_tokens(self, user_name: str) -> None:
        user_id = self.user(user_name).user_id
        with self.lock:
            for token in [t for t, info in self.tokens.items() if info.user_id == user_id]:
                del self.tokens[token]

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def valid_token(self, token: str) -> IssuedToken | None:
        """The token's record if it was issued, is not revoked and has not expired."""
        with self.lock:
            info = self.tokens.get(token)
        if info is None or info.expires_at <= self.clock():
            return None
        return info

    # -- routing --------------------------------------------------------------------------
    def route(self, req: Request) -> Reply | None:
        """The reply for a UAA or login-server path, or None when the path is not ours."""
        handlers: dict[tuple[str, str], Callable[[Request], Reply]] = {
            ("POST", "/uaa/oauth/token"): self._token,
            ("GET", "/uaa/userinfo"): self._userinfo,
            ("GET", "/login/oauth/authorize"): self._authorize,
            ("GET", "/login/login"): self._login_page,
            ("POST", "/login/login.do"): self._login_do,
            ("GET", "/login/logout.do"): self._logout,
            ("GET", "/login/"): self._home,
            ("GET", "/login"): self._home,
        }
        handler = handlers.get((req.method, req.path))
        return handler(req) if handler is not None else None

    # -- /uaa/oauth/token -----------------------------------------------------------------
    def _token(self, req: Request) -> Reply:
        form = _form(req)
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = req.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, binascii.Error):
                client_id = secret = None
        grant_type = form.get("grant_type")
        if grant_type is None:
            return _oauth_error(400, "invalid_request", "Missing grant type")
        if grant_type not in ("client_credentials", "authorization_code"):
            return _oauth_error(
                400, "unsupported_grant_type", f"Unsupported grant type: {grant_type}"
            )
        with self.lock:
            client = self.clients.get(client_id or "")
        if client is None or not secrets.compare_digest(
            client.secret.encode(), (secret or "").encode()
        ):
            return _oauth_error(
                401,
                "unauthorized",
                "Bad credentials",
                **{"WWW-Authenticate": 'Basic realm="UAA/client", error="unauthorized"'},
            )
        if grant_type not in client.grant_types:
            return _oauth_error(
                400, "unauthorized_client", f"Unauthorized grant type: {grant_type}"
            )
        if grant_type == "client_credentials":
            token, info = self._issue(client.client_id, None, client.authorities, self.token_ttl)
            return self._token_reply(token, info, self.token_ttl, id_token=False)
        return self._exchange_code(client, form)

    def _exchange_code(self, client: OAuthClient, form: dict[str, str]) -> Reply:
        """RFC 6749 §4.1.3 with RFC 7636 §4.6, in the order UAA checks (the code is spent first)."""
        code = form.get("code")
        if not code:
            return _oauth_error(400, "invalid_request", "An authorization code must be supplied.")
        verifier = form.get("code_verifier") or None
        if verifier is not None and not PKCE_PATTERN.match(verifier):
            return _oauth_error(400, "invalid_request", f"Code verifier {PKCE_FORMAT}")
        with self.lock:
            pending = self.codes.pop(code, None)
        if pending is None or pending.expires_at <= self.clock():
            return _oauth_error(400, "invalid_grant", f"Invalid authorization code: {code}")
        if pending.client_id != client.client_id:
            return _oauth_error(401, "invalid_client", "Client ID mismatch")
        requested = form.get("redirect_uri")
        if (requested is not None or pending.requested_redirect_uri is not None) and (
            requested != (pending.requested_redirect_uri or client.redirect_uri)
        ):
            return _oauth_error(400, "invalid_grant", "Redirect URI mismatch.")
        if pending.challenge is not None and verifier is None:
            return _oauth_error(
                400,
                "invalid_grant",
                "PKCE error: Code verifier must be provided for this authorization code.",
            )
        if pending.challenge is None and verifier is not None:
            return _oauth_error(
                400,
                "invalid_grant",
                "PKCE error: Code verifier not required for this authorization code.",
            )
        if pending.challenge is not None and verifier is not None:
            if not _pkce_matches(verifier, pending.challenge, pending.challenge_method):
                return _oauth_error(400, "invalid_grant", "Invalid code verifier")
        token, info = self._issue(
            client.client_id, pending.user_id, pending.scopes, self.user_token_ttl
        )
        return self._token_reply(token, info, self.user_token_ttl, id_token="openid" in info.scopes)

    def _issue(
        self, client_id: str, user_id: str | None, scopes: tuple[str, ...], ttl: float
    ) -> tuple[str, IssuedToken]:
        token = secrets.token_urlsafe(24)
        info = IssuedToken(client_id, user_id, scopes, self.clock() + ttl)
        with self.lock:
            self.tokens[token] = info
            self.tokens_issued += 1
        return token, info

    @staticmethod
    def _token_reply(token: str, info: IssuedToken, ttl: float, *, id_token: bool) -> Reply:
        body: dict[str, object] = {"access_token": token, "token_type": "bearer"}
        if id_token:
            body["id_token"] = secrets.token_urlsafe(24)
        body |= {
            "expires_in": int(ttl) - 1,
            "scope": " ".join(info.scopes),
            "jti": secrets.token_hex(16),
        }
        return Reply.json(200, body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    # -- /uaa/userinfo --------------------------------------------------------------------
    def _userinfo(self, req: Request) -> Reply:
        scheme, _, token = req.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _oauth_error(
                401,
                "unauthorized",
                "Full authentication is required to access this resource",
                **{"WWW-Authenticate": 'Bearer realm="UAA/oauth", error="unauthorized"'},
            )
        info = self.valid_token(token)
        if info is None:
            return _oauth_error(
                401,
                "invalid_token",
                "The token expired, was revoked, or the token ID is incorrect.",
                **{"WWW-Authenticate": 'Bearer realm="UAA/oauth", error="invalid_token"'},
            )
        if info.user_id is None or "openid" not in info.scopes:
            return _oauth_error(
                403,
                "insufficient_scope",
                "Insufficient scope for this resource",
                **{"WWW-Authenticate": 'Bearer realm="UAA/oauth", error="insufficient_scope"'},
            )
        with self.lock:
            user = next(u for u in self.users.values() if u.user_id == info.user_id)
            logons = self.logon_times.get(user.user_id, [])
            previous = logons[-2] if len(logons) > 1 else None
        return Reply.json(
            200,
            {
                "user_id": user.user_id,
                "sub": user.user_id,
                "user_name": user.user_name,
                # `cf create-user` sets both names to the user name; so does the fake.
                "given_name": user.user_name,
                "family_name": user.user_name,
                "email": user.email,
                "email_verified": True,
                "name": f"{user.user_name} {user.user_name}",
                "previous_logon_time": previous,
            },
        )

    # -- /login/oauth/authorize -----------------------------------------------------------
    def _authorize(self, req: Request) -> Reply:
        client_id = req.q("client_id") or ""
        with self.lock:
            client = self.clients.get(client_id)
        if client is None or "authorization_code" not in client.grant_types:
            return _page(
                400,
                "Unauthorized request",
                f"<p>No client with requested id: {html.escape(client_id)}</p>",
            )
        requested_redirect = req.q("redirect_uri")
        if requested_redirect is not None and requested_redirect != client.redirect_uri:
            return _page(
                400,
                "Unauthorized request",
                f"<p>Invalid redirect {html.escape(requested_redirect)} did not match one of "
                "the registered values.</p>",
            )
        redirect_uri = requested_redirect or client.redirect_uri
        if redirect_uri is None:
            return _page(400, "Unauthorized request", "<p>A redirect_uri must be supplied.</p>")
        session_id, session = self._session(req)
        if session is None or session.user_id is None:
            return self._send_to_login(req, session_id)
        state = req.q("state")

        def error(code: str, description: str) -> Reply:
            params = {"error": code, "error_description": description}
            return _redirect(
                _with_params(redirect_uri, params | ({"state": state} if state is not None else {}))
            )

        response_type = req.q("response_type") or ""
        if response_type != "code":
            return error(
                "unsupported_response_type", f"Unsupported response types: [{response_type}]"
            )
        asked = _split_scopes(req.q("scope") or "") or client.scopes
        beyond = [s for s in asked if s not in client.scopes]
        if beyond:
            return error("invalid_scope", f"Invalid scope: {' '.join(beyond)}.")
        challenge = req.q("code_challenge")
        method = req.q("code_challenge_method") or "plain"
        if challenge is not None:
            if not PKCE_PATTERN.match(challenge):
                return error("invalid_request", f"Code challenge {PKCE_FORMAT}")
            if method not in ("S256", "plain"):
                return error("invalid_request", "Unsupported code challenge method.")
        code = secrets.token_urlsafe(12)
        with self.lock:
            self.codes[code] = _Code(
                client.client_id,
                session.user_id,
                requested_redirect,
                tuple(s for s in client.scopes if s in asked),
                challenge,
                method,
                self.clock() + self.code_ttl,
            )
        return _redirect(
            _with_params(
                redirect_uri, {"code": code} | ({"state": state} if state is not None else {})
            )
        )

    def _send_to_login(self, req: Request, session_id: str | None) -> Reply:
        """Remember the authorize request in a (pre-login) session and show the login form."""
        query = req.raw_path.partition("?")[2]
        with self.lock:
            if session_id is None or session_id not in self.sessions:
                session_id = secrets.token_urlsafe(24)
            self.sessions[session_id] = _LoginSession(None, query)
        return _redirect(
            f"{self.base_url()}/login/login", **{"Set-Cookie": _cookie(SESSION_COOKIE, session_id)}
        )

    def _session(self, req: Request) -> tuple[str | None, _LoginSession | None]:
        session_id = _cookies(req).get(SESSION_COOKIE)
        if session_id is None:
            return None, None
        with self.lock:
            return session_id, self.sessions.get(session_id)

    # -- /login/login, /login/login.do, /login/logout.do ----------------------------------
    def _login_page(self, req: Request) -> Reply:
        csrf = secrets.token_urlsafe(16)
        message = ""
        if req.q("error") == "login_failure":
            message = f'<p class="error">{html.escape(LOGIN_FAILURE_TEXT)}</p>'
        elif req.q("error") == "invalid_login_request":
            message = '<p class="error">Invalid login request. Please try again.</p>'
        form = (
            f"{message}"
            '<form method="post" action="/login/login.do">'
            f'<input type="hidden" name="{CSRF_COOKIE}" value="{csrf}">'
            '<label>Email <input type="text" name="username" autocomplete="username"></label>'
            '<label>Password <input type="password" name="password"'
            ' autocomplete="current-password"></label>'
            '<button type="submit">Sign in</button>'
            "</form>"
        )
        return _page(200, "Cloud Foundry", form, **{"Set-Cookie": _cookie(CSRF_COOKIE, csrf)})

    def _login_do(self, req: Request) -> Reply:
        form = _form(req)
        cookies = _cookies(req)
        base = self.base_url()
        if not secrets.compare_digest(
            form.get(CSRF_COOKIE, "").encode(), cookies.get(CSRF_COOKIE, "\0").encode()
        ):
            return _redirect(f"{base}/login/login?error=invalid_login_request")
        with self.lock:
            user = self.users.get(form.get("username", ""))
        given = form.get("password", "").encode()
        if user is None or not secrets.compare_digest(user.password.encode(), given):
            return _redirect(f"{base}/login/login?error=login_failure")
        old_id, old = self._session(req)
        new_id = secrets.token_urlsafe(24)  # a new id at sign-in (no session fixation)
        with self.lock:
            if old_id is not None:
                self.sessions.pop(old_id, None)
            self.sessions[new_id] = _LoginSession(user.user_id)
            self.logon_times.setdefault(user.user_id, []).append(int(time.time() * 1000))
        saved = old.saved_authorize_query if old is not None else None
        target = f"{base}/login/oauth/authorize?{saved}" if saved is not None else f"{base}/login/"
        return _redirect(target, **{"Set-Cookie": _cookie(SESSION_COOKIE, new_id)})

    def _logout(self, req: Request) -> Reply:
        session_id, _ = self._session(req)
        with self.lock:
            if session_id is not None:
                self.sessions.pop(session_id, None)
            client = self.clients.get(req.q("client_id") or "")
        ended = {"Set-Cookie": _cookie(SESSION_COOKIE, "", max_age=0)}
        target = req.q("redirect")
        if target and client is not None and client.redirect_uri is not None:
            registered = client.redirect_uri
            rest = target[len(registered) :]
            if target.startswith(registered) and (
                registered.endswith("/") or rest == "" or rest[0] in "/?#"
            ):
                return _redirect(target, **ended)
        return _page(200, "Cloud Foundry", "<p>You have successfully logged out</p>", **ended)

    def _home(self, req: Request) -> Reply:
        _, session = self._session(req)
        if session is None or session.user_id is None:
            return _redirect(f"{self.base_url()}/login/login")
        with self.lock:
            name = next(u.user_name for u in self.users.values() if u.user_id == session.user_id)
        return _page(200, "Cloud Foundry", f"<p>Signed in as {html.escape(name)}</p>")
