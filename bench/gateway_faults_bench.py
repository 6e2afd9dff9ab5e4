"""Gateway under faults: a flood of wrong credentials, a stalled primary, a hung database.

Real processes on loopback: PostgreSQL, two Prometheus, the gateway on gunicorn (2 workers).

1. Floods at a fixed rate (default 750 req/s, aiohttp client) for ``--seconds``: distinct
   random credentials vs one repeated wrong credential; meanwhile a good tenant queries
   every 50 ms. Reported: database transactions/s (pg_stat_database, settled), credential
   lookups/s (the gateway's own counter), the flood's answers, the good tenant's latency.
2. The primary Prometheus SIGSTOPped: sequential queries' latency and who answered; then
   SIGCONT and the time until the primary answers again.
3. PostgreSQL blackholed (FaultProxy): latency of a recently verified tenant (stale-if-error)
   and of a never-seen one (JSON 503), then the time to recover after the database returns.

Writes docs/bench/gateway-faults.md.

    .venv/bin/python -m bench.gateway_faults_bench [--seconds 8] [--rate 750] [--out docs/bench/gateway-faults.md]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import secrets
import shutil
import signal
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
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
    start_gateway,
    start_prometheus,
    static_config,
    wait_for_series,
)

REPO = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ORG, SPACE = "org-b", "space-b"
# The per-tenant rate limit is not under test here: the good tenant may ask as often as it likes.
NO_TENANT_LIMIT = {"GATEWAY_RATE_LIMIT_PER_SECOND": "100000", "GATEWAY_RATE_LIMIT_BURST": "100000"}
STATS_SETTLE = 11.0  # an idle PostgreSQL 15 backend publishes its counters within 10 s


def _admin(sql: str, **params: Any) -> Any:
    engine = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            result = conn.execute(text(sql), params)
            return result.scalar() if result.returns_rows else None
    finally:
        engine.dispose()


def _xacts(name: str) -> int:
    return int(_admin("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = :n", n=name))


def _lookups(gateway: str) -> float:
    body = requests.get(gateway + "/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(body) for s in f.samples
               if s.name == "tenant_metrics_gateway_auth_lookups_total")


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] if values else float("nan")


async def _flood(gateway: str, good: str, seconds: float, rate: float, distinct: bool) -> dict[str, Any]:
    fixed = _basic("tm-" + secrets.token_hex(12), secrets.token_urlsafe(32))
    counts: dict[int, int] = {}
    good_lat: list[float] = []
    good_bad: list[int] = []
    limit = asyncio.Semaphore(128)
    url = gateway + "/api/v1/query?query=up"

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=128)) as session:
        async def bad() -> None:
            header = _basic("tm-" + secrets.token_hex(12), secrets.token_urlsafe(32)) if distinct else fixed
            try:
                async with session.get(url, headers={"Authorization": header},
                                       timeout=aiohttp.ClientTimeout(total=10)) as resp:
                    await resp.read()
                    counts[resp.status] = counts.get(resp.status, 0) + 1
            except (aiohttp.ClientError, TimeoutError):
                counts[0] = counts.get(0, 0) + 1
            finally:
                limit.release()

        async def good_tenant(stop_at: float) -> None:
            while time.monotonic() < stop_at:
                began = time.perf_counter()
                async with session.get(url, headers={"Authorization": good},
                                       timeout=aiohttp.ClientTimeout(total=10)) as resp:
                    await resp.read()
                    good_lat.append(time.perf_counter() - began)
                    if resp.status != 200:
                        good_bad.append(resp.status)
                await asyncio.sleep(0.05)

        began = time.monotonic()
        stop_at = began + seconds
        watcher = asyncio.create_task(good_tenant(stop_at))
        tasks = []
        i = 0
        if rate > 0:
            while (now := time.monotonic()) < stop_at:
                due = began + i / rate
                if due > now:
                    await asyncio.sleep(due - now)
                await limit.acquire()
                tasks.append(asyncio.create_task(bad()))
                i += 1
        await watcher
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - began
    return {"sent": sum(counts.values()), "elapsed": elapsed, "counts": counts, "good": good_lat, "good_errors": good_bad}


def bench_floods(gateway: str, db_name: str, good: str, seconds: float, rate: float) -> list[dict[str, Any]]:
    rows = []
    for label, distinct, r in (("no flood (baseline)", True, 0.0), ("distinct wrong credentials", True, rate),
                               ("one repeated wrong credential", False, rate)):
        time.sleep(STATS_SETTLE)
        before, lookups_before = _xacts(db_name), _lookups(gateway)
        out = asyncio.run(_flood(gateway, good, seconds, r, distinct))
        lookups = (_lookups(gateway) - lookups_before) / out["elapsed"]
        time.sleep(STATS_SETTLE)
        out.update(label=label, xacts=(_xacts(db_name) - before) / out["elapsed"], lookups=lookups)
        rows.append(out)
        print(label, {k: v for k, v in out.items() if k != "good"}, flush=True)
    return rows


def bench_stall(gateway: str, primary: Child, good: str, seconds: float) -> dict[str, Any]:
    session = requests.Session()

    def ask() -> tuple[float, str, int]:
        began = time.perf_counter()
        resp = session.get(gateway + "/api/v1/query", params={"query": "up"}, headers={"Authorization": good}, timeout=60)
        took = time.perf_counter() - began
        which = ",".join(sorted({r["metric"].get("which", "?") for r in resp.json()["data"]["result"]})) \
            if resp.status_code == 200 else "-"
        return took, which, resp.status_code

    before = [ask() for _ in range(20)]
    os.kill(primary.pid, signal.SIGSTOP)
    during: list[tuple[float, str, int]] = []
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            during.append(ask())
    finally:
        os.kill(primary.pid, signal.SIGCONT)
    resumed = time.monotonic()
    back = None
    after: list[tuple[float, str, int]] = []
    while time.monotonic() - resumed < 30:
        after.append(ask())
        if back is None and all(ask()[1] == "p1" for _ in range(4)):
            back = time.monotonic() - resumed
            break
        time.sleep(0.05)
    out = {"before": before, "during": during, "back": back, "after": after}
    print("stall", {"max": max(t for t, _, _ in during), "n": len(during), "back": back}, flush=True)
    return out


def bench_db_outage(prometheus: str, db_url: str, work: Path) -> dict[str, Any]:
    seen = add_tenant(db_url, "space", ORG, SPACE)
    unseen = add_tenant(db_url, "space", ORG, SPACE)
    with FaultProxy("127.0.0.1", 5432) as proxy:
        proxied = db_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        proc = start_gateway([prometheus], proxied, work / "gw-db", workers=2, extra_env=NO_TENANT_LIMIT)
        gw = proc.url
        try:
            def ask(creds: Any) -> tuple[float, int]:
                began = time.perf_counter()
                resp = requests.get(gw + "/api/v1/query", params={"query": "up"}, auth=creds.auth, timeout=60)
                return time.perf_counter() - began, resp.status_code

            for _ in range(20):  # fresh connections: every worker verifies it (each remembers its own)
                ask(seen)
            proxy.set_mode("blackhole")
            time.sleep(1.2)
            stale = [ask(seen) for _ in range(30)]
            new = [ask(unseen) for _ in range(5)]
            proxy.set_mode("pass")
            resumed = time.monotonic()
            while ask(unseen)[1] != 200 and time.monotonic() - resumed < 30:
                time.sleep(0.05)
            recovered = time.monotonic() - resumed
        finally:
            proc.stop()
    out = {"stale": stale, "new": new, "recovered": recovered}
    print("db", {"stale_max": max(t for t, _ in stale), "new": new, "recovered": recovered}, flush=True)
    return out


def _ms(v: float) -> str:
    return f"{v * 1000:.1f}"


def write(path: Path, floods: list[dict[str, Any]], stall: dict[str, Any], outage: dict[str, Any],
          seconds: float, rate: float) -> None:
    lines = [
        "# Gateway under faults",
        "",
        f"`.venv/bin/python -m bench.gateway_faults_bench --seconds {seconds:g} --rate {rate:g}` on "
        f"this project's machine ({os.cpu_count()} CPUs, Python {platform.python_version()}), "
        "PostgreSQL 15 and two Prometheus on loopback, the gateway on gunicorn with 2 workers and default settings. "
        "The flood client (aiohttp, one process) shares the two CPUs with everything else, so the flood rate it "
        "reaches is reported next to the one asked for.",
        "",
        "## A flood of wrong credentials",
        "",
        "A good tenant queries every 50 ms during each flood (its credential is verified, so it is never throttled).",
        "",
        "| flood | sent/s | answers | DB transactions/s | credential lookups/s | good tenant p50 / p99 / max (ms) | good tenant errors |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in floods:
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(row["counts"].items())) or "-"
        good = row["good"]
        lines.append(
            f"| {row['label']} | {row['sent'] / row['elapsed']:.0f} | {answers} | {row['xacts']:.1f} | "
            f"{row['lookups']:.1f} | {_ms(_pct(good, 0.5))} / {_ms(_pct(good, 0.99))} / {_ms(max(good))} | "
            f"{len(row['good_errors'])} of {len(good)} |"
        )
    during = stall["during"]
    times = [t for t, _, _ in during]
    who: dict[str, int] = {}
    for _, which, status in during:
        key = which if status == 200 else f"HTTP {status}"
        who[key] = who.get(key, 0) + 1
    before = [t for t, _, _ in stall["before"]]
    lines += [
        "",
        "## The primary Prometheus stalls (SIGSTOP)",
        "",
        "Sequential queries from one client; the second Prometheus is healthy. Defaults: "
        "GATEWAY_UPSTREAM_TTFB_TIMEOUT 2 s, GATEWAY_UPSTREAM_PROBE_TIMEOUT 1 s, and the benchmark's "
        "GATEWAY_HEALTH_CHECK_SECONDS 0.5.",
        "",
        "| phase | queries | p50 (ms) | max (ms) | answered by |",
        "| --- | --- | --- | --- | --- |",
        f"| before | {len(before)} | {_ms(statistics.median(before))} | {_ms(max(before))} | p1 |",
        f"| primary stopped | {len(times)} | {_ms(statistics.median(times))} | {_ms(max(times))} | "
        + ", ".join(f"{k}: {v}" for k, v in sorted(who.items())) + " |",
        "",
        f"After SIGCONT the primary answered again (4 in a row) after "
        f"{stall['back']:.1f} s." if stall["back"] is not None else "After SIGCONT the primary did not come back within 30 s.",
        "",
        "## PostgreSQL unreachable (blackholed by FaultProxy)",
        "",
        "| who | requests | statuses | p50 (ms) | max (ms) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, rows in (("verified a moment before (stale-if-error)", outage["stale"]), ("never seen", outage["new"])):
        statuses = sorted({s for _, s in rows})
        ts = [t for t, _ in rows]
        lines.append(f"| {label} | {len(rows)} | {statuses} | {_ms(statistics.median(ts))} | {_ms(max(ts))} |")
    lines += [
        "",
        f"Back to `pass`, the never-seen tenant got 200 after {outage['recovered']:.1f} s (no restart).",
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=750.0)
    parser.add_argument("--out", default=str(REPO / "docs" / "bench" / "gateway-faults.md"))
    args = parser.parse_args()
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    work = Path(tempfile.mkdtemp(prefix="tm-gateway-faults-bench-"))
    name = "tm_bench_" + uuid.uuid4().hex[:12]
    _admin(f'CREATE DATABASE "{name}"')
    db_url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    exp = exporter.start("127.0.0.1", 0, service="svc-b", username=None)
    procs: list[Child] = []
    try:
        db.upgrade(db_url)
        address = exp.url.split("//")[1].split("/")[0]
        urls = []
        for which in ("p1", "p2"):
            labels = {"cf_organization_guid": ORG, "cf_space_guid": SPACE, "which": which}
            proc = start_prometheus(work / which, static_config([Target(address, labels)]), binary=binary)
            url = proc.url
            procs.append(proc)
            urls.append(url)
            wait_for_series(url, "up == 1", 1)
        tenant = add_tenant(db_url, "space", ORG, SPACE)
        good = _basic(tenant.username, tenant.password)
        gw_proc = start_gateway(urls, db_url, work / "gw", workers=2, extra_env=NO_TENANT_LIMIT)
        gateway = gw_proc.url
        procs.append(gw_proc)
        floods = bench_floods(gateway, name, good, args.seconds, args.rate)
        stall = bench_stall(gateway, procs[0], good, args.seconds)
        outage = bench_db_outage(urls[0], db_url, work)
        write(Path(args.out), floods, stall, outage, args.seconds, args.rate)
        print("wrote", args.out)
    finally:
        for proc in reversed(procs):
            if proc.proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
            proc.stop()
        exp.stop()
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
