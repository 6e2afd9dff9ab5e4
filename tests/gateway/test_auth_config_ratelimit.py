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


# --- failure modes: stale-if-error, bounded lookups, floods ---------------------------------


def _broken_sessions(tmp_path) -> object:  # type: ignore[no-untyped-def]
    return db.make_session_factory(db.make_engine(f"sqlite:///{tmp_path / 'missing' / 'x.sqlite3'}"))


def test_stale_if_error_serves_recent_credentials_only_while_the_database_fails(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    tenant = add_tenant(database_url, "space", "org-1", "space-1")
    header = _basic(tenant.username, tenant.password)
    clock = Clock()
    engine = db.make_engine(database_url)
    try:
        auth = Authenticator(db.make_session_factory(engine), ttl=1.0, clock=clock, stale_if_error=300)
        assert auth.stale(header) is None and not auth.recently_verified(header)  # never verified
        verified = auth.authenticate(header)
        good_sessions, auth._sessions = auth._sessions, _broken_sessions(tmp_path)  # type: ignore[assignment]
        clock.now += 100
        with pytest.raises(UpstreamError):
            auth.authenticate(header)
        assert auth.recently_verified(header)
        assert auth.stale(header) == verified
        assert auth.cached(header) == verified  # remembered for the TTL: the DB is asked once a second
        clock.now += 201  # past the stale-if-error window
        assert auth.stale(header) is None
        # Revocation: once the database refuses, nothing stale is served any more.
        auth._sessions = good_sessions
        clock.now += 10
        auth.authenticate(header)
        revoke(database_url, tenant.binding_id)
        clock.now += 1.01
        with pytest.raises(Unauthenticated):
            auth.authenticate(header)
        assert auth.stale(header) is None and not auth.recently_verified(header)
    finally:
        engine.dispose()


def test_impossible_and_unknown_usernames_are_refused_without_a_lookup(database_url: str) -> None:
    from sqlalchemy import event

    tenant = add_tenant(database_url, "space", "org-1", "space-1")
    engine = db.make_engine(database_url)
    lookups: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def count(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        if "bindings" in statement:
            lookups.append(statement)

    clock = Clock()
    try:
        auth = Authenticator(db.make_session_factory(engine), ttl=1.0, clock=clock)
        for user in ("admin", "TM-ABC", "tm-", "tm-a_b", "x" * 40):
            with pytest.raises(Unauthenticated):
                auth.authenticate(_basic(user, "p" * 43))
        assert lookups == []
        unknown = "tm-" + "0" * 24
        with pytest.raises(Unauthenticated):
            auth.authenticate(_basic(unknown, "first"))
        assert len(lookups) == 1
        with pytest.raises(Unauthenticated):  # another password, same unknown username: no lookup
            auth.authenticate(_basic(unknown, "second"))
        assert len(lookups) == 1
        clock.now += 10.01  # the unknown-username memory is short
        with pytest.raises(Unauthenticated):
            auth.authenticate(_basic(unknown, "third"))
        assert len(lookups) == 2
        assert auth.authenticate(_basic(tenant.username, tenant.password)).value == "space-1"
    finally:
        engine.dispose()


def test_failure_budget_per_address_and_username() -> None:
    from gateway.ratelimit import FailureBudget

    clock = Clock()
    budget = FailureBudget(RateLimiter(1.0, 3, clock=clock), RateLimiter(0.5, 2, clock=clock))
    budget.reserve("10.0.0.1", "tm-a")
    budget.reserve("10.0.0.1", "tm-a")
    with pytest.raises(TooManyRequests) as info:  # this username from this address: spent
        budget.reserve("10.0.0.1", "tm-a")
    assert info.value.retry_after == pytest.approx(2.0)
    budget.reserve("10.0.0.2", "tm-a")  # the same username from elsewhere is not locked out
    budget.reserve("10.0.0.1", "tm-b")  # the address had its token given back above
    with pytest.raises(TooManyRequests):  # the address budget is spent (3)
        budget.reserve("10.0.0.1", "tm-c")
    budget.release("10.0.0.1", "tm-b")  # a lookup that verified gives its token back
    budget.reserve("10.0.0.1", "tm-c")
    clock.now += 1.0
    budget.reserve("10.0.0.1", None)


@pytest.mark.parametrize(
    ("peer", "xff", "trusted", "client"),
    [
        ("198.51.100.1", ["203.0.113.5"], [], "198.51.100.1"),  # no router configured: the peer
        ("198.51.100.1", ["203.0.113.5"], ["10.0.0.0/8"], "198.51.100.1"),  # the peer is no router
        ("10.0.0.2", ["203.0.113.5"], ["10.0.0.0/8"], "203.0.113.5"),
        ("10.0.0.2", ["1.2.3.4, 203.0.113.5"], ["10.0.0.0/8"], "203.0.113.5"),  # right-most untrusted
        ("10.0.0.2", ["1.2.3.4", "203.0.113.5, 10.0.0.9"], ["10.0.0.0/8"], "203.0.113.5"),
        ("10.0.0.2", [], ["10.0.0.0/8"], "10.0.0.2"),  # no header: the router itself
        ("10.0.0.2", ["10.0.0.7"], ["10.0.0.0/8"], "10.0.0.7"),  # only routers: the left-most
        ("10.0.0.2", ["junk, 203.0.113.5"], ["10.0.0.0/8"], "203.0.113.5"),
        ("::1", ["2001:db8::5"], ["::1/128"], "2001:db8::5"),
        (None, [], [], "unknown"),
    ],
)
def test_client_address(peer: str | None, xff: list[str], trusted: list[str], client: str) -> None:
    import ipaddress

    from gateway.clientaddr import client_address

    networks = [ipaddress.ip_network(n) for n in trusted]
    assert client_address(peer, xff, networks) == client


def test_failure_mode_settings() -> None:
    import ipaddress

    base = {"PROMETHEUS_URLS": "http://p1:9090", "DATABASE_URL": "sqlite:///x.db"}
    s = from_env(base)
    assert (s.auth_stale_if_error_seconds, s.auth_lookup_timeout_seconds, s.trusted_proxies) == (300.0, 3.0, ())
    assert (s.upstream_ttfb_timeout_seconds, s.upstream_probe_timeout_seconds) == (2.0, 1.0)
    s = from_env({**base, "GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7", "GATEWAY_AUTH_STALE_IF_ERROR": "0",
                  "GATEWAY_UPSTREAM_TTFB_TIMEOUT": "0.5", "GATEWAY_AUTH_FAILURE_BURST": "7"})
    assert s.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.0.2.7/32"))
    assert (s.auth_stale_if_error_seconds, s.upstream_ttfb_timeout_seconds, s.auth_failure_burst) == (0.0, 0.5, 7)
    for name, value in (("GATEWAY_TRUSTED_PROXIES", "10.0.0.0/33"), ("GATEWAY_AUTH_LOOKUP_TIMEOUT", "0"),
                        ("GATEWAY_UPSTREAM_PROBE_TIMEOUT", "x"), ("GATEWAY_AUTH_MAX_LOOKUPS", "0")):
        with pytest.raises(ConfigError, match=name):
            from_env({**base, name: value})


def test_lookup_runner_bounds_a_hung_lookup_and_keeps_slots_for_recovery() -> None:
    import asyncio
    import threading
    import time

    from gateway.lookups import LookupBusy, LookupRunner, LookupTimeout

    hang = threading.Event()

    def lookup(arg: str) -> str:
        if arg == "hang":
            hang.wait(10)
        return arg

    async def body() -> None:
        runner = LookupRunner(max_running=2, timeout=0.2, max_abandoned=3)
        assert await runner.run(lookup, "ok") == "ok"
        began = time.monotonic()
        with pytest.raises(LookupTimeout):
            await runner.run(lookup, "hang")
        assert time.monotonic() - began < 1
        runner.mark(False, time.monotonic())
        assert (runner.running, runner.abandoned) == (0, 1)
        assert await runner.run(lookup, "ok") == "ok"  # the stuck thread holds no slot
        for _ in range(2):
            with pytest.raises(LookupTimeout):
                await runner.run(lookup, "hang")
        began = time.monotonic()
        with pytest.raises(LookupBusy):  # three stuck: refused at once, no new thread
            await runner.run(lookup, "ok")
        assert time.monotonic() - began < 0.05
        hang.set()  # the database answers again: the stuck threads finish
        for _ in range(50):
            if runner.abandoned == 0:
                break
            await asyncio.sleep(0.02)
        assert runner.abandoned == 0
        runner.mark(True, time.monotonic())
        assert await asyncio.gather(*(runner.run(lookup, str(i)) for i in range(5))) == [str(i) for i in range(5)]

    asyncio.run(asyncio.wait_for(body(), 20))


def test_gatekeeper_serves_stale_and_throttles_floods_without_lookups(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import asyncio
    import secrets

    from prometheus_client import CollectorRegistry
    from sqlalchemy import event

    from gateway.gatekeeper import Gatekeeper
    from gateway.metrics import GatewayMetrics
    from gateway.ratelimit import FailureBudget

    tenant = add_tenant(database_url, "space", "org-1", "space-1")
    good = _basic(tenant.username, tenant.password)
    engine = db.make_engine(database_url)
    lookups: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def count(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        if "bindings" in statement:
            lookups.append(statement)

    clock = Clock()
    registry = CollectorRegistry()
    auth = Authenticator(db.make_session_factory(engine), ttl=1.0, clock=clock, stale_if_error=300)
    budget = FailureBudget(RateLimiter(1.0, 5, clock=clock), RateLimiter(1.0, 5, clock=clock))
    gatekeeper = Gatekeeper(auth, RateLimiter(1000.0, 1000), GatewayMetrics.create(registry), budget=budget)

    def sample(name: str) -> float | None:
        return registry.get_sample_value(name)

    async def body() -> None:
        assert (await gatekeeper.admit(good, "10.0.0.1")).value == "space-1"
        statuses = []
        for _ in range(40):
            wrong = _basic("tm-" + secrets.token_hex(12), secrets.token_urlsafe(32))
            try:
                await gatekeeper.admit(wrong, "10.0.0.1")
            except Unauthenticated:
                statuses.append(401)
            except TooManyRequests as exc:
                assert exc.retry_after and exc.retry_after > 0
                statuses.append(429)
        assert statuses == [401] * 5 + [429] * 35
        assert len(lookups) == 1 + 5
        assert sample("tenant_metrics_gateway_auth_throttled_total") == 35
        # The good tenant on the same address: not throttled, cached or looked up again.
        clock.now += 1.01
        assert (await gatekeeper.admit(good, "10.0.0.1")).value == "space-1"
        assert len(lookups) == 7
        # Another address has its own budget.
        with pytest.raises(Unauthenticated):
            await gatekeeper.admit(_basic("tm-" + secrets.token_hex(12), "x"), "10.0.0.2")
        # The database goes away: the recent credential is served stale, a new one is 503.
        good_sessions, auth._sessions = auth._sessions, _broken_sessions(tmp_path)
        clock.now += 1.01
        assert (await gatekeeper.admit(good, "10.0.0.1")).value == "space-1"
        assert sample("tenant_metrics_gateway_auth_serving_stale") == 1
        assert sample("tenant_metrics_gateway_auth_stale_answers_total") == 1
        other = add_tenant(database_url, "space", "org-1", "space-1")
        with pytest.raises(UpstreamError):
            await gatekeeper.admit(_basic(other.username, other.password), "10.0.0.3")
        auth._sessions = good_sessions
        assert (await gatekeeper.admit(_basic(other.username, other.password), "10.0.0.3")).value == "space-1"
        assert sample("tenant_metrics_gateway_auth_serving_stale") == 0

    try:
        asyncio.run(asyncio.wait_for(body(), 30))
    finally:
        engine.dispose()
