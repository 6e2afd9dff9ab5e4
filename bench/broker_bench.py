"""Broker benchmark: provision+bind+unbind+deprovision cycles per second, and latency.

Runs, in one go and with the same gunicorn settings, our broker on PostgreSQL and a bare
openbrokerapi broker keeping state in memory (the ceiling), each with 1 and 16 concurrent
clients, and prints (or writes, with --write) a Markdown report.

    .venv/bin/python -m bench.broker_bench --write docs/bench/broker.md

PostgreSQL: TEST_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test);
a scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import requests
from sqlalchemy import create_engine, text

from broker.config import DEFAULT_SERVICE_ID, DEFAULT_SPACE_PLAN_ID
from tenant_metrics.core import db
from tenant_metrics.world import Child, children, free_port, spawn_ready

ROOT = Path(__file__).resolve().parent.parent

USERNAME = "bench-broker"
PASSWORD = "bench-password-0123456789-abcdef"
ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
HEADERS = {"X-Broker-API-Version": "2.17"}


@dataclass(frozen=True, slots=True)
class Result:
    target: str
    clients: int
    cycles: int
    seconds: float
    errors: int
    request_p50_ms: float
    request_p99_ms: float
    cycle_p50_ms: float
    cycle_p99_ms: float
    server_cpu_ms_per_cycle: float

    @property
    def cycles_per_second(self) -> float:
        return self.cycles / self.seconds


_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def server_cpu(master: int, database: str | None) -> float:
    """CPU seconds used so far by a gunicorn master, its workers and, for ours, the
    PostgreSQL backends serving its database (their process title names the database)."""
    total = _proc_cpu(master)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == master or (database and cmdline.startswith("postgres: ") and f" {database} " in cmdline):
            total += _proc_cpu(int(entry.name))
    return total


def start_gunicorn(app: str, env: dict[str, str], workers: int, logdir: Path) -> Child:
    """``app`` on gunicorn with the broker's gunicorn settings; ready once the catalog answers."""
    port = free_port()
    env = {**os.environ, **env, "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": str(workers),
           "LOG_LEVEL": "WARNING"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    base = f"http://127.0.0.1:{port}"
    name = app.split(".")[0]
    return spawn_ready(name, [sys.executable, "-m", "gunicorn", "--config", "python:broker.gunicorn_conf", app],
                       logdir / f"{name}.log", url=base, timeout=30, env=env, cwd=ROOT,
                       ready=lambda: requests.get(base + "/v2/catalog", auth=(USERNAME, PASSWORD),
                                                  headers=HEADERS, timeout=2).ok)


def one_cycle(session: requests.Session, base: str, latencies: list[float]) -> bool:
    iid, bid = str(uuid.uuid4()), str(uuid.uuid4())
    query = {"service_id": DEFAULT_SERVICE_ID, "plan_id": DEFAULT_SPACE_PLAN_ID}
    calls = [
        ("PUT", f"/v2/service_instances/{iid}", {"json": {
            "service_id": DEFAULT_SERVICE_ID, "plan_id": DEFAULT_SPACE_PLAN_ID,
            "context": {"platform": "cloudfoundry", "organization_guid": "org-" + iid[:8],
                        "space_guid": "space-" + iid[:8], "instance_name": "bench"}}}, 201),
        ("PUT", f"/v2/service_instances/{iid}/service_bindings/{bid}", {"json": {
            "service_id": DEFAULT_SERVICE_ID, "plan_id": DEFAULT_SPACE_PLAN_ID, "app_guid": "app"}}, 201),
        ("DELETE", f"/v2/service_instances/{iid}/service_bindings/{bid}", {"params": query}, 200),
        ("DELETE", f"/v2/service_instances/{iid}", {"params": query}, 200),
    ]
    ok = True
    for method, path, kwargs, expected in calls:
        started = time.perf_counter()
        r = session.request(method, base + path, headers=HEADERS, timeout=30, **kwargs)
        latencies.append(time.perf_counter() - started)
        ok = ok and r.status_code == expected
    return ok


@dataclass
class Samples:
    cycles: int = 0
    errors: int = 0
    seconds: float = 0.0
    requests: list[float] | None = None
    cycle_times: list[float] | None = None
    cpu_seconds: float = 0.0


def measure(target: str, base: str, clients: int, seconds: float, warmup: float) -> Samples:
    stop_at = time.monotonic() + warmup + seconds
    measure_from = time.monotonic() + warmup
    lock = threading.Lock()
    request_lat: list[float] = []
    cycle_lat: list[float] = []
    counts = {"cycles": 0, "errors": 0}

    def client() -> None:
        session = requests.Session()
        session.auth = (USERNAME, PASSWORD)
        mine: list[float] = []
        mine_cycles: list[float] = []
        cycles = errors = 0
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            lat: list[float] = []
            ok = one_cycle(session, base, lat)
            if time.monotonic() >= measure_from and time.monotonic() < stop_at:
                mine.extend(lat)
                mine_cycles.append(time.perf_counter() - started)
                cycles += 1
                errors += 0 if ok else 1
        session.close()
        with lock:
            request_lat.extend(mine)
            cycle_lat.extend(mine_cycles)
            counts["cycles"] += cycles
            counts["errors"] += errors

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    return Samples(counts["cycles"], counts["errors"], seconds, request_lat, cycle_lat)


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] * 1000 if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


def summarise(target: str, clients: int, slices: list[Samples]) -> Result:
    requests_ = [v for s in slices for v in s.requests or []]
    cycles_ = [v for s in slices for v in s.cycle_times or []]
    cycles = sum(s.cycles for s in slices)
    return Result(target, clients, cycles, sum(s.seconds for s in slices),
                  sum(s.errors for s in slices), pct(requests_, 50), pct(requests_, 99),
                  pct(cycles_, 50), pct(cycles_, 99),
                  1000 * sum(s.cpu_seconds for s in slices) / cycles if cycles else float("nan"))


def report(results: list[Result], args: argparse.Namespace, command: str) -> str:
    lines = [
        "# Broker benchmark",
        "",
        "Cycles of provision + bind + unbind + deprovision over real HTTP, each client a thread with its own",
        "connection. `ours` is broker.app on gunicorn with PostgreSQL, every change persisted with its audit",
        "event; `ceiling` is a bare openbrokerapi broker keeping state in a dict (bench/broker_ceiling.py),",
        f"served by the same gunicorn settings (sync workers: {args.workers}), measured in the same run:",
        f"both servers stay up and {args.rounds} slices of {args.seconds:g} s (after {args.warmup:g} s unmeasured)",
        "alternate between them for each client count, so background load on the machine hits both alike.",
        "Both run with LOG_LEVEL=WARNING (no access log lines).",
        "",
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}; the client",
        "threads share those CPUs with the servers and PostgreSQL.",
        "",
        "| target | clients | cycles/s | requests p50 (ms) | requests p99 (ms) | cycle p50 (ms) | cycle p99 (ms) | server CPU ms/cycle | failed cycles |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r.target} | {r.clients} | {r.cycles_per_second:.1f} | {r.request_p50_ms:.2f} | "
                     f"{r.request_p99_ms:.2f} | {r.cycle_p50_ms:.2f} | {r.cycle_p99_ms:.2f} | "
                     f"{r.server_cpu_ms_per_cycle:.2f} | {r.errors} |")
    lines += ["", "Server CPU per cycle counts the gunicorn master and workers and, for ours, the PostgreSQL",
              "backends serving its database: the cost of a cycle independent of what else runs on the machine.", ""]
    by = {(r.target, r.clients): r for r in results}
    for clients in args.clients:
        ours, ceiling = by.get(("ours", clients)), by.get(("ceiling", clients))
        if ours and ceiling:
            ratio = ours.cycles_per_second / ceiling.cycles_per_second
            verdict = "meets" if ratio >= 0.5 else "misses"
            lines.append(f"- {clients} client(s): ours reaches {ratio:.0%} of the ceiling's throughput "
                         f"({verdict} the goal of at least 50%).")
    lines += ["", "Where the time goes, what was done about it and what is left: docs/broker.md, section",
              "\"Performance\". The machine is shared: look at the per-slice ratios printed on stdout.", ""]
    duration = int(len(results) * args.rounds * (args.seconds + args.warmup) + 15)
    lines += ["", f"Reproduce (PostgreSQL on 127.0.0.1:5432, trust auth; about {duration} s):",
              "", "```", command, "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per slice (default 4)")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds per slice (default 0.5)")
    parser.add_argument("--rounds", type=int, default=6, help="alternating slices per target (default 6)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers for both (default 4)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--write", type=Path, help="write the Markdown report here")
    args = parser.parse_args(argv)

    name = "tm_bench_" + uuid.uuid4().hex[:10]
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    env = {"BROKER_USERNAME": USERNAME, "BROKER_PASSWORD": PASSWORD, "DATABASE_URL": url}
    results: list[Result] = []
    try:
        db.upgrade(url)
        with children() as procs, tempfile.TemporaryDirectory(prefix="broker-bench-") as logdir:
            servers = {
                "ceiling": procs.add(start_gunicorn("bench.broker_ceiling:create_app()", env, args.workers,
                                                    Path(logdir))),
                "ours": procs.add(start_gunicorn("broker.app:create_app()", env, args.workers, Path(logdir))),
            }
            # Both servers stay up; short slices alternate between them, so a neighbour's
            # load on this machine hits both alike instead of whichever ran at the time.
            for clients in args.clients:
                slices: dict[str, list[Samples]] = {"ceiling": [], "ours": []}
                for _ in range(args.rounds):
                    for target in ("ceiling", "ours"):
                        proc, base = servers[target], servers[target].url
                        database = name if target == "ours" else None
                        before = server_cpu(proc.pid, database)
                        sample = measure(target, base, clients, args.seconds, args.warmup)
                        # CPU over the whole slice, warm-up included: scale to the measured part.
                        share = args.seconds / (args.seconds + args.warmup)
                        sample.cpu_seconds = (server_cpu(proc.pid, database) - before) * share
                        slices[target].append(sample)
                for target in ("ceiling", "ours"):
                    result = summarise(target, clients, slices[target])
                    ratios = [o.cycles / c.cycles for o, c in zip(slices["ours"], slices["ceiling"]) if c.cycles]
                    print(f"{target:8} clients={clients:3} {result.cycles_per_second:8.1f} cycles/s "
                          f"p50={result.request_p50_ms:.2f}ms p99={result.request_p99_ms:.2f}ms "
                          f"errors={result.errors} slice ratios={[round(r, 2) for r in ratios]}", flush=True)
                    results.append(result)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    command = ".venv/bin/python -m bench.broker_bench " + " ".join(argv if argv is not None else sys.argv[1:])
    text_out = report(results, args, command.strip())
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text_out)
    print(text_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
