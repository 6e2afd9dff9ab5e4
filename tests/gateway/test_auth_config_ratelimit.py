"""Authenticator (real DB, injected clock), settings from the environment, token buckets."""

from __future__ import annotations

import base64

import pytest

from gateway.auth import Authenticator, Presented, parse_authorization
from gateway.config import from_env
from gateway.ratelimit import RateLimiter
from tenant_metrics.core import db
from tenant_metrics.core.errors import ConfigError, TooManyRequests, Unauthenticated, UpstreamError
from tenant_metrics.core.labels import Scope
from tests.gateway.support import add_tenant, revoke


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_authenticate_scopes_and_cache_ttl(database_url: str) -> None:
    space = add_tenant(database_url, "space", "org-1", "space-1")
    org = add_tenant(database_url, "org", "org-2", "space-2")
    clock = Clock()
    engine = db.make_engine(database_url)
    try:
        auth = Authenticator(db.make_session_factory(engine), ttl=1.0, clock=clock)
        t = auth.authenticate(_basic(space.username, space.password))
        assert (t.scope, t.value, t.binding_id) == (Scope.SPACE, "space-1", space.binding_id)
        assert t.matcher.label == "cf_space_guid"
        o = auth.authenticate(f"Bearer {org.password}")
        assert (o.scope, o.value) == (Scope.ORG, "org-2")
        assert o.matcher.label == "cf_organization_guid"

        revoke(database_url, space.binding_id)
        clock.now += 0.5
        assert auth.authenticate(_basic(space.username, space.password)) == t  # cached
        clock.now += 0.6  # past the 1 s TTL
        with pytest.raises(Unauthenticated):
            auth.authenticate(_basic(space.username, space.password))
        with pytest.raises(Unauthenticated):
            auth.authenticate(_basic(org.username, "wrong"))
        assert auth.authenticate(_basic(org.username, org.password)).value == "org-2"
    finally:
        engine.dispose()


def test_refusals_are_remembered_for_the_ttl_only(database_url: str) -> None:
    """A refused header is refused again without the DB for up to ttl; then asked again."""
    tenant = add_tenant(database_url, "space", "org-1", "space-1")
    clock = Clock()
    engine = db.make_engine(database_url)
    try:
        auth = Authenticator(db.make_session_factory(engine), ttl=1.0, clock=clock)
        wrong = _basic(tenant.username, "wrong")
        with pytest.raises(Unauthenticated):
            auth.authenticate(wrong)
        with pytest.raises(Unauthenticated):  # answered from memory, no I/O
            auth.cached(wrong)
        assert auth.cached(_basic(tenant.username, tenant.password)) is None  # never verified yet
        engine.dispose()
        auth._sessions = db.make_session_factory(db.make_engine("sqlite:///nonexistent/dir/x.db"))
        with pytest.raises(Unauthenticated):  # still remembered: the broken DB is not asked
            auth.authenticate(wrong)
        clock.now += 1.01
        with pytest.raises(UpstreamError):  # past the TTL the DB is asked again (and is down)
            auth.authenticate(wrong)
        with pytest.raises(UpstreamError):  # an unreachable DB is not remembered as a refusal
            auth.authenticate(wrong)
    finally:
        engine.dispose()


def test_ttl_above_one_second_is_refused() -> None:
    with pytest.raises(ValueError):
        Authenticator(None, ttl=1.5)  # type: ignore[arg-type]


def test_nul_in_username_is_401_on_every_database(database_url: str) -> None:
    tenant = add_tenant(database_url, "space", "org-1", "space-1")
    engine = db.make_engine(database_url)
    try:
        auth = Authenticator(db.make_session_factory(engine))
        for user in (f"{tenant.username}\x00", "\x00", f"tm-\x00{tenant.password}"):
            with pytest.raises(Unauthenticated):
                auth.authenticate(_basic(user, tenant.password))
        assert auth.authenticate(_basic(tenant.username, tenant.password)).value == "space-1"
    finally:
        engine.dispose()


def test_database_unreachable_is_upstream_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = db.make_engine(f"sqlite:///{tmp_path / 'missing' / 'x.sqlite3'}")
    auth = Authenticator(db.make_session_factory(engine))
    with pytest.raises(UpstreamError):
        auth.authenticate(_basic("tm-x", "y"))


@pytest.mark.parametrize(
    "header",
    [None, "", "Basic", "Basic ===", "Basic " + base64.b64encode(b"nocolon").decode(),
     "Basic " + base64.b64encode(b":password").decode(), "Basic " + base64.b64encode(b"user:").decode(),
     "Basic " + base64.b64encode(b"\xff\xfe:x").decode(), "Bearer", "Token abc",
     "Basic " + base64.b64encode(b"tm-x\x00:password").decode(), "Basic " + base64.b64encode(b"\x00:p").decode(),
     "Basic " + base64.b64encode(b"u\n:p").decode(), "Basic " + base64.b64encode(b"u:" + b"p" * 600).decode(),
     "Bearer " + "t" * 600],
)
def test_malformed_authorization(header: str | None) -> None:
    with pytest.raises(Unauthenticated):
        parse_authorization(header)


def test_password_with_colon_and_repr_redacted() -> None:
    presented = parse_authorization(_basic("user", "pa:ss"))
    assert presented == Presented("user", "pa:ss")
    assert "pa:ss" not in repr(presented)


def test_settings_from_env() -> None:
    s = from_env({"PROMETHEUS_URLS": "http://p1:9090/, http://p2:9090", "DATABASE_URL": "sqlite:///x.db", "PORT": "9000",
                  "GATEWAY_SCOPE_ORG_ID": "tenant", "GATEWAY_MAX_POINTS": "500"})
    assert s.prometheus_urls == ("http://p1:9090", "http://p2:9090")
    assert (s.port, s.scope_org_id, s.max_points, s.auth_cache_seconds) == (9000, "tenant", 500, 1.0)
    assert from_env({"PROMETHEUS_URLS": "http://p"}).port == 8090


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, "PROMETHEUS_URLS"),
        ({"PROMETHEUS_URLS": "ftp://x"}, "PROMETHEUS_URLS"),
        ({"PROMETHEUS_URLS": "http://x?a=b"}, "PROMETHEUS_URLS"),
        ({"PROMETHEUS_URLS": "http://x", "GATEWAY_AUTH_CACHE_SECONDS": "5"}, "GATEWAY_AUTH_CACHE_SECONDS"),
        ({"PROMETHEUS_URLS": "http://x", "GATEWAY_RATE_LIMIT_PER_SECOND": "0"}, "GATEWAY_RATE_LIMIT_PER_SECOND"),
        ({"PROMETHEUS_URLS": "http://x", "GATEWAY_MAX_POINTS": "many"}, "GATEWAY_MAX_POINTS"),
        ({"PROMETHEUS_URLS": "http://x", "PORT": "70000"}, "PORT"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        from_env(env)


def test_token_bucket() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=2, clock=clock)
    limiter.take("a")
    limiter.take("a")
    with pytest.raises(TooManyRequests) as info:
        limiter.take("a")
    assert info.value.retry_after == pytest.approx(0.5)
    limiter.take("b")  # independent bucket
    clock.now += 0.5
    limiter.take("a")
    with pytest.raises(TooManyRequests):
        limiter.take("a")


def test_concurrent_first_requests_share_one_lookup(database_url: str) -> None:
    """Twenty requests with a header not yet verified ask the database once, not twenty
    times (counted on the real engine); a wrong header likewise."""
    import asyncio

    from prometheus_client import CollectorRegistry
    from sqlalchemy import event

    from gateway.app import Gatekeeper
    from gateway.metrics import GatewayMetrics

    tenant = add_tenant(database_url, "space", "org-1", "space-1")
    engine = db.make_engine(database_url)
    lookups: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def count(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        if "bindings" in statement:
            lookups.append(statement)

    gatekeeper = Gatekeeper(Authenticator(db.make_session_factory(engine), ttl=1.0),
                            RateLimiter(1000.0, 1000), GatewayMetrics.create(CollectorRegistry()))

    async def burst(header: str) -> list[object]:
        return await asyncio.gather(*(gatekeeper.authenticate(header) for _ in range(20)),
                                    return_exceptions=True)

    try:
        answers = asyncio.run(burst(_basic(tenant.username, tenant.password)))
        assert {a.binding_id for a in answers} == {tenant.binding_id}  # type: ignore[attr-defined]
        assert len(lookups) == 1
        refused = asyncio.run(burst(_basic(tenant.username, "wrong")))
        assert all(isinstance(a, Unauthenticated) for a in refused)
        assert len(lookups) == 2
        assert gatekeeper._pending == {}
    finally:
        engine.dispose()
