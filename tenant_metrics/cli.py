"""The operator's CLI, ``tenant-metrics``: one entry point, subcommands owned by each part."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence

from tenant_metrics.core import jsonlog
from tenant_metrics.core.config import database_url
from tenant_metrics.core.errors import ConfigError, TenantMetricsError


def _db_upgrade(args: argparse.Namespace) -> int:
    from tenant_metrics.core import db

    url = database_url(os.environ)
    db.upgrade(url, args.revision)
    print(f"database at revision {db.current_revision(url)}")
    return 0


def _db_current(args: argparse.Namespace) -> int:
    from tenant_metrics.core import db

    print(db.current_revision(database_url(os.environ)) or "(empty)")
    return 0


def _settings_checks() -> dict[str, Callable[[Mapping[str, str]], object]]:
    from broker.config import from_env as broker_settings
    from gateway.config import from_env as gateway_settings
    from sd.config import SdSettings

    return {"broker": broker_settings, "gateway": gateway_settings, "sd": SdSettings.from_env}


def _check(args: argparse.Namespace) -> int:
    """Validate each part's settings, then the database: every problem, not just the first."""
    from tenant_metrics.core import db

    checks = _settings_checks()
    parts = list(checks) if args.part == "all" else [args.part]
    problems = 0
    for part in parts:
        try:
            checks[part](os.environ)
            print(f"ok    {part}: settings valid")
        except ConfigError as exc:
            problems += 1
            print(f"FAIL  {part}: {exc}")
    try:
        url = database_url(os.environ)
        engine = db.make_engine(url)
        try:
            db.ping(engine)
        finally:
            engine.dispose()
        current, head = db.current_revision(url), db.head_revision()
        if current == head:
            print(f"ok    database: reachable, schema at {current}")
        else:
            problems += 1
            print(f"FAIL  database: schema at {current or '(empty)'}, code expects {head}: run 'tenant-metrics db upgrade'")
    except TenantMetricsError as exc:
        problems += 1
        print(f"FAIL  database: {exc}")
    return 1 if problems else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tenant-metrics",
        description="Per-tenant metrics for Cloud Foundry: broker, service discovery, query gateway.",
        epilog="Settings come from the environment (see docs/operations.md). "
        "DATABASE_URL defaults to a SQLite file in the working directory.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    db_parser = sub.add_parser("db", help="database schema: upgrade, current")
    db_sub = db_parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = db_sub.add_parser("upgrade", help="migrate the database to the latest schema (safe to run concurrently)")
    up.add_argument("revision", nargs="?", default="head", help="target revision (default: head)")
    up.set_defaults(func=_db_upgrade)
    cur = db_sub.add_parser("current", help="print the database's schema revision")
    cur.set_defaults(func=_db_current)

    check = sub.add_parser("check", help="validate settings (all parts or one) and the database before starting")
    check.add_argument("part", nargs="?", default="all", choices=["all", "broker", "gateway", "sd"])
    check.set_defaults(func=_check)

    from broker import cli as broker_cli
    from gateway import cli as gateway_cli
    from sd import cli as sd_cli
    from tenant_metrics.demo import cli as demo_cli

    broker_cli.register(sub)
    gateway_cli.register(sub)
    sd_cli.register(sub)
    demo_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    jsonlog.configure(os.environ.get("LOG_LEVEL", "INFO"))
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"tenant-metrics: configuration error: {exc}", file=sys.stderr)
        return 2
    except TenantMetricsError as exc:
        print(f"tenant-metrics: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
