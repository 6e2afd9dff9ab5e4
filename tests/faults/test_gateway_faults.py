"""The gateway through real faults: a blackholed PostgreSQL (FaultProxy), a SIGSTOPped
Prometheus, and a flood of wrong credentials; the gateway runs under gunicorn as in production.

Each test has bounds on every wait; timing bounds are generous (the machine is shared) but
well under the failure they guard against (a 130 s hung lookup, a 35 s stalled query)."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from tenant_metrics.core import db
from tenant_metrics.fakes import exporter
from tenant_metrics.fakes.tcpproxy import FaultProxy
from tenant_metrics.world import (
    Child,
    Target,
    add_tenant,
    revoke,
    start_gateway,
    start_prometheus,
    static_config,
    wait_for_series,
)
from tests.conftest import POSTGRES_ADMIN_URL, _drop_postgres_database, _new_postgres_database

pytestmark = pytest.mark.e2e

ORG, SPACE = "org-f", "space-f"
# The per-tenant rate limit is not under test here.
NO_TENANT_LIMIT = {"GATEWAY_RATE_LIMIT_PER_SECOND": "100000", "GATEWAY_RATE_LIMIT_BURST": "100000"}
QUERY = {"query": "up"}


@dataclass(frozen=True)
class Proms:
    primary: Child
    primary_url: str
    secondary_url: str


@pytest.fixture(scope="module")
def proms(tmp_path_factory: pytest.TempPathFactory, prometheus_binary: str) -> Iterator[Proms]:
    """Two real Prometheus instances scraping one exporter; each labels its series with
    ``which`` (p1 or p2), so an answer tells which instance gave it."""
    work = tmp_path_factory.mktemp("gateway-faults")
    exp = exporter.start("127.0.0.1", 0, service="svc-f", username=None)
    address = exp.url.split("//")[1].split("/")[0]
    procs: list[Child] = []
    try:
        urls = []
        for which in ("p1", "p2"):
            labels = {"cf_organization_guid": ORG, "cf_space_guid": SPACE, "which": which}
            proc = start_prometheus(work / which, static_config([Target(address, labels)]), binary=prometheus_binary)
            url = proc.url
            procs.append(proc)
            urls.append(url)
            wait_for_series(url, "up == 1", 1)
        yield Proms(procs[0], urls[0], urls[1])
    finally:
        for proc in procs:
            if proc.proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
            proc.stop()
        exp.stop()


@pytest.fixture
def pg_url() -> Iterator[str]:
    name, url = _new_postgres_database()
    try:
        db.upgrade(url)
        yield url
    finally:
        _drop_postgres_database(name)


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[list[Child]]:
    procs: list[Child] = []
    yield procs
    for proc in procs:
        proc.stop()


def _through(url: str, proxy: FaultProxy) -> str:
    return url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")


def _metrics(gateway: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body = requests.get(gateway + "/metrics", timeout=10).text
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            key = (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "pid")))
            out[key] = out.get(key, 0.0) + s.value
    return out


def _metric(gateway: str, name: str, **labels: str) -> float:
    return _metrics(gateway).get((name, tuple(sorted(labels.items()))), 0.0)


def _query(gateway: str, auth: tuple[str, str], timeout: float = 30) -> tuple[requests.Response, float]:
    began = time.monotonic()
    resp = requests.get(gateway + "/api/v1/query", params=QUERY, auth=auth, timeout=timeout)
    return resp, time.monotonic() - began


def _which(resp: requests.Response) -> set[str]:
    assert resp.status_code == 200, resp.text
    return {r["metric"].get("which", "?") for r in resp.json()["data"]["result"]}


def _error(resp: requests.Response, status: int) -> dict[str, str]:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body: dict[str, str] = resp.json()
    assert body["status"] == "error" and body["errorType"] and body["error"]
    return body


def _stopped(pid: int) -> bool:
    """Every thread of ``pid`` is stopped (state T in /proc)."""
    states = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text()
        states.append(stat[stat.rindex(")") + 2])
    return bool(states) and all(state in "Tt" for state in states)


def _eventually(check, timeout: float, interval: float = 0.1) -> float:  # type: ignore[no-untyped-def]
    """Call ``check`` until it returns true; the seconds it took, or AssertionError at ``timeout``."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if check():
            return time.monotonic() - began
        time.sleep(interval)
    raise AssertionError(f"not within {timeout}s")


# --- the database ----------------------------------------------------------------------


def test_hung_database_serves_recent_credentials_and_recovers(
    proms: Proms, pg_url: str, tmp_path: Path, gateways: list[Child]
) -> None:
    seen = add_tenant(pg_url, "space", ORG, SPACE)
    unseen = add_tenant(pg_url, "space", ORG, SPACE)
    with FaultProxy("127.0.0.1", 5432) as proxy:
        proc = start_gateway([proms.primary_url], _through(pg_url, proxy), tmp_path / "gw", workers=1)
        gw = proc.url
        gateways.append(proc)
        assert _which(_query(gw, seen.auth)[0]) == {"p1"}
        proxy.set_mode("blackhole")
        time.sleep(1.2)  # past the 1 s credential cache
        # Recently verified: served while the database is unreachable, within the lookup bound.
        resp, took = _query(gw, seen.auth)  # the first waits for its lookup to time out
        assert _which(resp) == {"p1"} and took < 5, took
        for _ in range(5):  # then, the database known to be failing, from memory at once
            resp, took = _query(gw, seen.auth)
            assert _which(resp) == {"p1"} and took < 1.5, took
            time.sleep(0.3)
        assert _metric(gw, "tenant_metrics_gateway_auth_serving_stale") == 1
        assert _metric(gw, "tenant_metrics_gateway_auth_stale_answers_total") >= 1
        # Never verified: a JSON 503 in Prometheus's format, fast.
        for _ in range(3):
            resp, took = _query(gw, unseen.auth)
            _error(resp, 503)
            assert took < 8, took
        # Still serving the recent credential after many hung lookups (none starves it).
        resp, took = _query(gw, seen.auth)
        assert _which(resp) == {"p1"} and took < 5
        # The database answers again: both work within seconds, no restart.
        proxy.set_mode("pass")
        recovered = _eventually(lambda: _query(gw, unseen.auth, timeout=10)[0].status_code == 200, 10)
        assert recovered < 8
        assert _metric(gw, "tenant_metrics_gateway_auth_serving_stale") == 0
        # Revocation holds within ~1 s once the database answers.
        revoke(pg_url, seen.binding_id)
        took = _eventually(lambda: _query(gw, seen.auth, timeout=10)[0].status_code == 401, 5, interval=0.05)
        assert took < 2.5, took
        log = (tmp_path / "gw" / "gateway.log").read_text()
        assert "serving stale credentials" in log and "credential store answers again" in log
        assert seen.password not in log and unseen.password not in log


def test_refused_database_serves_recent_credentials(
    proms: Proms, pg_url: str, tmp_path: Path, gateways: list[Child]
) -> None:
    seen = add_tenant(pg_url, "space", ORG, SPACE)
    unseen = add_tenant(pg_url, "space", ORG, SPACE)
    with FaultProxy("127.0.0.1", 5432) as proxy:
        proc = start_gateway([proms.primary_url], _through(pg_url, proxy), tmp_path / "gw", workers=1)
        gw = proc.url
        gateways.append(proc)
        assert _query(gw, seen.auth)[0].status_code == 200
        proxy.set_mode("reset")
        time.sleep(1.2)
        resp, took = _query(gw, seen.auth)
        assert _which(resp) == {"p1"} and took < 5
        resp, took = _query(gw, unseen.auth)
        _error(resp, 503)
        assert took < 8
        proxy.set_mode("pass")
        _eventually(lambda: _query(gw, unseen.auth, timeout=10)[0].status_code == 200, 10)


# --- the upstream ----------------------------------------------------------------------


def test_stalled_primary_fails_over_fast_and_comes_back(
    proms: Proms, pg_url: str, tmp_path: Path, gateways: list[Child]
) -> None:
    tenant = add_tenant(pg_url, "space", ORG, SPACE)
    proc = start_gateway([proms.primary_url, proms.secondary_url], pg_url, tmp_path / "gw", workers=2,
                             extra_env=NO_TENANT_LIMIT)
    gw = proc.url
    gateways.append(proc)
    assert all(_which(_query(gw, tenant.auth)[0]) == {"p1"} for _ in range(4))
    os.kill(proms.primary.pid, signal.SIGSTOP)
    try:
        # A stop reaches every thread of the process asynchronously: wait until it has.
        _eventually(lambda: _stopped(proms.primary.pid), 5, interval=0.01)
        answers = []
        for _ in range(12):
            resp, took = _query(gw, tenant.auth, timeout=30)
            assert took < 5, f"a query waited {took:.1f}s on a stalled primary"
            answers.append(_which(resp))
        # Every answer came from the secondary (the stalled primary answered nothing), and
        # once both workers found the stall, they stay there (sticky).
        assert all(a == {"p2"} for a in answers), answers
        assert _metric(gw, "tenant_metrics_gateway_failovers_total", reason="stall") + \
            _metric(gw, "tenant_metrics_gateway_failovers_total", reason="probe") >= 1
    finally:
        os.kill(proms.primary.pid, signal.SIGCONT)
    # Back once healthy (two ready checks, 0.5 s apart, on each worker: the gauge is the
    # workers' maximum); then it stays back.
    took = _eventually(lambda: _metric(gw, "tenant_metrics_gateway_upstream_active") == 0, 15)
    assert took < 8, took
    assert all(_which(_query(gw, tenant.auth)[0]) == {"p1"} for _ in range(20))


# --- floods ----------------------------------------------------------------------------


# An idle backend publishes its counters to pg_stat_database within 10 s (PostgreSQL 15).
STATS_SETTLE = 11.0


def _lookups(gateway: str) -> float:
    return sum(v for (n, _), v in _metrics(gateway).items() if n == "tenant_metrics_gateway_auth_lookups_total")


def _xacts(name: str) -> int:
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            row = conn.execute(text("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = :n"),
                               {"n": name}).one()
            return int(row[0])
    finally:
        engine.dispose()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _flood(gateway: str, seconds: float, distinct: bool, headers: dict[str, str] | None = None,
           threads: int = 12) -> tuple[int, dict[int, int]]:
    """Wrong credentials as fast as ``threads`` clients can send them, for ``seconds``."""
    stop_at = time.monotonic() + seconds
    counts: dict[int, int] = {}
    lock = threading.Lock()
    fixed = _basic("tm-" + secrets.token_hex(12), secrets.token_urlsafe(32))

    def client() -> None:
        session = requests.Session()
        while time.monotonic() < stop_at:
            header = _basic("tm-" + secrets.token_hex(12), secrets.token_urlsafe(32)) if distinct else fixed
            resp = session.get(gateway + "/api/v1/query", params=QUERY,
                               headers={"Authorization": header, **(headers or {})}, timeout=10)
            with lock:
                counts[resp.status_code] = counts.get(resp.status_code, 0) + 1

    with ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(client) for _ in range(threads)]:
            f.result()
    return sum(counts.values()), counts


def test_flood_of_wrong_credentials_costs_the_database_little(
    proms: Proms, pg_url: str, tmp_path: Path, gateways: list[Child]
) -> None:
    good = add_tenant(pg_url, "space", ORG, SPACE)
    name = pg_url.rsplit("/", 1)[1]
    proc = start_gateway([proms.primary_url], pg_url, tmp_path / "gw", workers=2)
    gw = proc.url
    gateways.append(proc)
    # The good tenant keeps its connection, as Grafana does: the worker that verified its
    # credential serves it (what a worker has verified is its own; docs/gateway.md).
    tenant_session = requests.Session()
    tenant_session.auth = good.auth

    def good_query() -> tuple[int, float]:
        began = time.monotonic()
        resp = tenant_session.get(gw + "/api/v1/query", params=QUERY, timeout=10)
        return resp.status_code, time.monotonic() - began

    assert good_query()[0] == 200
    good_answers: list[tuple[int, float]] = []
    done = threading.Event()

    def good_tenant() -> None:
        while not done.is_set():
            good_answers.append(good_query())
            time.sleep(0.1)

    watcher = threading.Thread(target=good_tenant)
    time.sleep(STATS_SETTLE)
    before = _xacts(name)
    lookups_before = _lookups(gw)
    began = time.monotonic()
    watcher.start()
    try:
        sent, counts = _flood(gw, 6.0, distinct=True)
    finally:
        done.set()
        watcher.join(timeout=15)
    elapsed = time.monotonic() - began
    lookups = (_lookups(gw) - lookups_before) / elapsed
    time.sleep(STATS_SETTLE)
    per_second = (_xacts(name) - before) / elapsed
    assert sent / elapsed > 100, counts  # a flood, not a trickle
    assert set(counts) <= {401, 429}, counts
    assert counts.get(429, 0) > 0, counts  # the budget ran out and said so
    assert lookups <= 25, f"{lookups:.1f} lookups/s for {sent / elapsed:.0f} refused requests/s"
    assert per_second <= 50, f"{per_second:.1f} transactions/s for {sent / elapsed:.0f} refused requests/s"
    assert good_answers and all(status == 200 for status, _ in good_answers), good_answers
    assert max(took for _, took in good_answers) < 2
    throttled = requests.get(gw + "/api/v1/query", params=QUERY,
                             headers={"Authorization": _basic("tm-" + secrets.token_hex(12), "x" * 43)}, timeout=10)
    if throttled.status_code == 429:
        assert int(throttled.headers["Retry-After"]) >= 1
        assert _error(throttled, 429)["errorType"] == "unavailable"
    assert _metric(gw, "tenant_metrics_gateway_auth_throttled_total") > 0


def test_x_forwarded_for_only_from_trusted_routers(
    proms: Proms, pg_url: str, tmp_path: Path, gateways: list[Child]
) -> None:
    budget = {"GATEWAY_AUTH_FAILURES_PER_SECOND": "0.01", "GATEWAY_AUTH_FAILURE_BURST": "3"}
    trusting = start_gateway([proms.primary_url], pg_url, tmp_path / "t", workers=1,
                                   extra_env={**budget, "GATEWAY_TRUSTED_PROXIES": "127.0.0.0/8"})
    gw_t = trusting.url
    gateways.append(trusting)
    plain = start_gateway([proms.primary_url], pg_url, tmp_path / "p", workers=1, extra_env=budget)
    gw_p = plain.url
    gateways.append(plain)

    def wrong(gateway: str, xff: str) -> int:
        header = _basic("tm-" + secrets.token_hex(12), secrets.token_urlsafe(32))
        return requests.get(gateway + "/api/v1/query", params=QUERY,
                            headers={"Authorization": header, "X-Forwarded-For": xff}, timeout=10).status_code

    # Behind a trusted router, each client address has its own budget; whatever a client
    # writes to the left of the router's entry does not change its address.
    assert [wrong(gw_t, f"{i}.1.1.1, 198.51.100.7") for i in range(5)] == [401, 401, 401, 429, 429]
    assert wrong(gw_t, "198.51.100.8") == 401
    assert wrong(gw_t, "203.0.113.9, 127.0.0.2") == 401  # trusted hops are skipped from the right
    # From a peer that is no trusted router, the header is ignored: the peer's budget counts.
    assert [wrong(gw_p, f"198.51.100.{i}") for i in range(5)] == [401, 401, 401, 429, 429]
