"""Benchmark: one sd cycle at 100, 1,000 and 10,000 Aiven services (fake Aiven + fake CC).

Each scale runs in a fresh process (so peak RSS belongs to that scale), against fakes
served from yet another process (so their JSON encoding is not charged to sd). Measured
per cycle: wall time, CPU time of the sd process (all its threads), peak RSS, and the
requests the fakes received. "first" is a cold start: empty DB, every owner unknown,
1% of services still lacking the integration. "steady" is the mean of the following
cycles with nothing changed. DNS is the resolver seam returning fixed addresses (real DNS
latency is the network's, and lookups run in a thread pool).

    .venv/bin/python -m bench.sd_bench                 # 100, 1000, 10000 -> docs/bench/sd.md
    .venv/bin/python -m bench.sd_bench --scales 100 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "bench-es"
ENDPOINT = "7a1b2c3d-0000-4000-8000-00000000be0c"
TOKEN = "bench-token"


def serve_fakes(count: int) -> None:
    """Child process: fake Aiven and CC holding ``count`` services and their owners."""
    from tenant_metrics.fakes import aiven as fa
    from tenant_metrics.fakes.cloudcontroller import FakeCloudController

    aiven = fa.FakeAiven(project="bench", token=TOKEN)
    aiven.add_endpoint(ENDPOINT)
    names = fa.populate(aiven, count, prefix=PREFIX, endpoint_id=ENDPOINT, integrated=True)
    for name in names[::100]:  # 1% still need the integration
        for iid in [k for k, v in aiven.integrations.items() if v["source_service"] == name]:
            del aiven.integrations[iid]
    aiven._changed()
    cc = FakeCloudController(token_ttl=43200)
    for i in range(count):
        cc.add_owner(
            fa.instance_guid(i),
            f"instance-{i}",
            fa.space_guid(i),
            f"space-{i // 10}",
            fa.org_guid(i),
            f"org-{i // 100}",
        )
    aiven._list_services()  # build the cached body now, so the first cycle does not wait for the fake
    aiven.start()
    cc.start()
    print(json.dumps({"aiven": aiven.url, "cc": cc.url}), flush=True)
    sys.stdin.read()  # serve until the parent closes our stdin
    aiven.stop()
    cc.stop()


def _calls(url: str) -> dict[str, int]:
    import requests

    return dict(requests.get(url + "/_fake/calls", timeout=30).json())


def _diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def _empty(url: str) -> None:
    """sd's tables emptied, so every scale starts cold."""
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    with eng.begin() as conn:
        for table in ("service_owners", "integration_attempts", "leases"):
            conn.execute(text(f"DELETE FROM {table}"))
    eng.dispose()


def run_scale(count: int, steady_cycles: int, database_url: str | None) -> dict[str, Any]:
    """Child process: start the fakes, then time sd cycles against them."""
    from prometheus_client import CollectorRegistry

    from sd.app import build
    from sd.config import SdSettings
    from tenant_metrics.core import db

    fakes = subprocess.Popen(
        [sys.executable, "-m", "bench.sd_bench", "--serve-fakes", str(count)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert fakes.stdout is not None
        urls = json.loads(fakes.stdout.readline())
        with tempfile.TemporaryDirectory() as tmp:
            url = database_url or f"sqlite:///{tmp}/sd.sqlite3"
            db.upgrade(url)
            _empty(url)
            settings = SdSettings.from_env(
                {
                    "AIVEN_API_URL": urls["aiven"],
                    "AIVEN_API_TOKEN": TOKEN,
                    "AIVEN_PROJECT": "bench",
                    "AIVEN_PROMETHEUS_ENDPOINT_ID": ENDPOINT,
                    "AIVEN_SERVICE_PREFIX": PREFIX,
                    "SD_TARGETS_FILE": f"{tmp}/targets.json",
                    "CF_API_URL": urls["cc"],
                    "CF_CLIENT_ID": "tenant-metrics-sd",
                    "CF_CLIENT_SECRET": "sd-secret",
                    "DATABASE_URL": url,
                }
            )

            def resolver(host: str) -> list[str]:
                h = abs(hash(host))
                return [f"10.{h % 250}.{(h >> 8) % 250}.{n}" for n in (1, 2, 3)]

            app = build(settings, registry=CollectorRegistry(), resolver=resolver, holder="bench")

            def measured() -> dict[str, Any]:
                before = {"aiven": _calls(urls["aiven"]), "cc": _calls(urls["cc"])}
                wall, cpu = time.perf_counter(), time.process_time()
                report = app.discovery.run_cycle()
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                after = {"aiven": _calls(urls["aiven"]), "cc": _calls(urls["cc"])}
                assert report.ok, report.failures
                assert report.integrations is not None
                return {
                    "wall_s": wall,
                    "cpu_s": cpu,
                    "aiven_calls": _diff(after["aiven"], before["aiven"]),
                    "cc_calls": _diff(after["cc"], before["cc"]),
                    "target_groups": report.target_groups,
                    "written": report.written,
                    "pending": report.integrations.candidates - len(report.integrations.created),
                }

            results = [measured()]
            pending, converge = results[0]["pending"], 1
            while pending > 0:  # the bounded integrator catches up (20 per cycle)
                pending, converge = measured()["pending"], converge + 1
            measured()  # the listing changed in the last catch-up cycle; the fake re-encodes it once
            results += [measured() for _ in range(steady_cycles)]
            size = Path(settings.targets_file).stat().st_size
            app.close()
            _empty(url)
    finally:
        if fakes.stdin is not None:
            fakes.stdin.close()
        fakes.wait(timeout=60)
    steady = results[-steady_cycles:]
    return {
        "services": count,
        "first": results[0],
        "cycles_to_integrate_all": converge,
        "steady": {
            "wall_s": sum(r["wall_s"] for r in steady) / len(steady),
            "cpu_s": sum(r["cpu_s"] for r in steady) / len(steady),
            "cpu_s_max": max(r["cpu_s"] for r in steady),
            "aiven_calls": steady[-1]["aiven_calls"],
            "cc_calls": steady[-1]["cc_calls"],
            "written": any(r["written"] for r in steady),
        },
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "targets_file_bytes": size,
    }


def _fmt_calls(calls: dict[str, int]) -> str:
    total = sum(calls.values())
    if not total:
        return "0"
    detail = ", ".join(
        f"{n}× {k.split(' ', 1)[0]} {k.split(' ', 1)[1].replace('/v1/project/{project}', '')}"
        for k, n in sorted(calls.items())
    )
    return f"{total} ({detail})"


def _db_name(url: str | None) -> str:
    return "PostgreSQL" if url and "postgres" in url else "SQLite"


def markdown(results: list[dict[str, Any]], command: str) -> str:
    lines = [
        "# sd benchmark: one discovery cycle at 100, 1,000 and 10,000 Aiven services",
        "",
        (
            f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}."
        ),
        "",
        "Reproduce:",
        "",
        "```sh",
        command,
        "```",
        "",
        "Set-up: fake Aiven and fake Cloud Controller (fakes/) serve from a separate process over loopback",
        "HTTP; each scale runs in a fresh sd process. *First* = cold start: empty DB, every owner unknown",
        "(Cloud Controller asked in batches of 100), 1% of services still lacking the prometheus",
        "integration (at most 20 created per cycle). *Steady* = mean of 3 cycles with nothing changed, after",
        "the bounded integrator has caught up. CPU is the sd process's (all threads); RSS is its peak. DNS is the resolver seam",
        "(fixed answers); the Aiven list body is about 4 KB per service (39.5 MB at 10,000), as the real",
        "one is several KB. Wall time includes the fakes' loopback HTTP on the same 2 CPUs.",
        "",
        "| services | DB | cycle | wall (s) | CPU (s) | Aiven calls | CC calls (UAA + CC) | targets written |",
        "|---:|---|---|---:|---:|---|---|---|",
    ]
    for r in results:
        f, s = r["first"], r["steady"]
        lines.append(
            f"| {r['services']:,} | {r['database']} | first | {f['wall_s']:.2f} | {f['cpu_s']:.2f} | "
            f"{_fmt_calls(f['aiven_calls'])} | {_fmt_calls(f['cc_calls'])} | {f['written']} |"
        )
        lines.append(
            f"| {r['services']:,} | {r['database']} | steady | {s['wall_s']:.2f} | {s['cpu_s']:.2f} "
            f"(max {s['cpu_s_max']:.2f}) | {_fmt_calls(s['aiven_calls'])} | "
            f"{_fmt_calls(s['cc_calls'])} | {s['written']} |"
        )
    lines += [
        "",
        "| services | DB | peak RSS (MB) | targets file (bytes) | cycles until every integration exists |",
        "|---:|---|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['services']:,} | {r['database']} | {r['peak_rss_mb']:.0f} | {r['targets_file_bytes']:,} | "
            f"{r['cycles_to_integrate_all']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scales", default="100,1000,10000")
    parser.add_argument("--steady-cycles", type=int, default=3)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument(
        "--postgres-url",
        help="also run every scale on this (migrated, emptied) PostgreSQL database",
    )
    parser.add_argument("--output", default=str(ROOT / "docs" / "bench" / "sd.md"))
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--serve-fakes", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fakes is not None:
        serve_fakes(args.serve_fakes)
        return
    if args.one is not None:
        print(json.dumps(run_scale(args.one, args.steady_cycles, args.database_url)))
        return
    results = []
    databases = [None, *([args.postgres_url] if args.postgres_url else [])]
    for scale, database in ((int(s), d) for s in args.scales.split(",") for d in databases):
        cmd = [
            sys.executable,
            "-m",
            "bench.sd_bench",
            "--one",
            str(scale),
            "--steady-cycles",
            str(args.steady_cycles),
            *(["--database-url", database] if database else []),
        ]
        env = {**os.environ, "LOG_LEVEL": "WARNING"}
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["database"] = _db_name(database)
        results.append(result)
        print(json.dumps(result), flush=True)
    command = (
        "make deps  # once\n.venv/bin/python -m bench.sd_bench"
        + (f" --scales {args.scales}" if args.scales != "100,1000,10000" else "")
        + (
            " --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/sd_bench"
            if args.postgres_url
            else ""
        )
    )
    text = markdown(results, command)
    if not args.no_write:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
