"""The operator's CLI, ``tenant-metrics``: one entry point, subcommands owned by each part."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from tenant_metrics import __version__
from tenant_metrics.core import jsonlog
from tenant_metrics.core.config import DatabaseSettings
from tenant_metrics.core.errors import ConfigError, InvalidInput, TenantMetricsError, UpstreamError


def _db_upgrade(args: argparse.Namespace, settings: DatabaseSettings) -> int:
    from alembic.util import CommandError

    from tenant_metrics.core import db

    try:
        db.upgrade(settings.url, args.revision, settings.timeouts)  # with the migration timeouts
    except CommandError as exc:  # an unknown target revision
        raise InvalidInput(f"db upgrade: {exc}") from exc
    print(f"database at revision {db.current_revision(settings.url, settings.timeouts)}")
    return 0


def _db_current(args: argparse.Namespace, settings: DatabaseSettings) -> int:
    from tenant_metrics.core import db

    print(db.current_revision(settings.url, settings.timeouts) or "(empty)")
    return 0


@dataclass(frozen=True, slots=True)
class CheckInputs:
    """Everything ``check`` validates, read from the environment once: each part's
    problems (every one, not the first) and the database settings."""

    problems: dict[str, tuple[str, ...]]
    database: DatabaseSettings | None


def _check_inputs(env: Mapping[str, str]) -> CheckInputs:
    from broker.config import from_env as broker_settings
    from gateway.config import from_env as gateway_settings
    from sd.config import SdSettings

    readers: dict[str, Callable[[Mapping[str, str]], object]] = {
        "broker": broker_settings, "gateway": gateway_settings, "sd": SdSettings.from_env,
    }
    problems: dict[str, tuple[str, ...]] = {}
    for part, read in readers.items():
        try:
            read(env)
            problems[part] = ()
        except ConfigError as exc:
            problems[part] = exc.problems
    try:
        database: DatabaseSettings | None = DatabaseSettings.from_env(env)
        problems["database settings"] = ()
    except ConfigError as exc:
        database, problems["database settings"] = None, exc.problems
    return CheckInputs(problems, database)


def _check(args: argparse.Namespace, inputs: CheckInputs) -> int:
    """Validate each part's settings, then the database: every problem, not just the first."""
    parts = list(inputs.problems) if args.part == "all" else [args.part, "database settings"]
    failed: list[str] = []
    database_problem = None
    for part in parts:
        for problem in inputs.problems[part]:
            print(f"FAIL  {part}: {problem}")
        if inputs.problems[part]:
            failed.append(part)
        elif part != "database settings":
            print(f"ok    {part}: settings valid")
    if inputs.database is not None:
        database_problem = _check_database(inputs.database)
        if database_problem:
            failed.append("database")
            print(f"FAIL  database: {database_problem}")
    if failed:
        # stdout has one FAIL line per problem; stderr one line saying what failed.
        detail = f" ({database_problem})" if database_problem else ""
        print(f"tenant-metrics: check failed: {', '.join(failed)}{detail}", file=sys.stderr)
        return 1
    return 0


def _check_database(settings: DatabaseSettings) -> str | None:
    """None when reachable and migrated; else what is wrong, on one line."""
    from tenant_metrics.core import db

    try:
        engine = db.make_engine(settings.url, settings.timeouts)
        try:
            db.ping(engine)
        finally:
            engine.dispose()
        current, head = db.current_revision(settings.url, settings.timeouts), db.head_revision()
    except (UpstreamError, SQLAlchemyError) as exc:
        return f"database unavailable: {db.describe_failure(settings.url, exc)}"
    if current != head:
        return f"schema at {current or '(empty)'}, code expects {head}: run 'tenant-metrics db upgrade'"
    print(f"ok    database: reachable, schema at {current}")
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tenant-metrics",
        description="Per-tenant metrics for Cloud Foundry: broker, service discovery, query gateway.",
        epilog="Settings come from the environment (see docs/operations.md). "
        "DATABASE_URL defaults to a SQLite file in the working directory.",
    )
    parser.add_argument("--version", action="version", version=f"tenant-metrics {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    db_parser = sub.add_parser("db", help="database schema: upgrade, current")
    db_sub = db_parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = db_sub.add_parser("upgrade", help="migrate the database to the latest schema (safe to run concurrently)")
    up.add_argument("revision", nargs="?", default="head", help="target revision (default: head)")
    up.set_defaults(func=_db_upgrade, settings=DatabaseSettings.from_env)
    cur = db_sub.add_parser("current", help="print the database's schema revision")
    cur.set_defaults(func=_db_current, settings=DatabaseSettings.from_env)

    check = sub.add_parser("check", help="validate settings (all parts or one) and the database before starting")
    check.add_argument("part", nargs="?", default="all", choices=["all", "broker", "gateway", "sd"])
    check.set_defaults(func=_check, settings=_check_inputs)

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
    """Settings are read here, once per command, from the environment (a command's
    ``settings`` reader), and handed to it; errors become one line on stderr."""
    jsonlog.configure(os.environ.get("LOG_LEVEL", "INFO"))
    args = build_parser().parse_args(argv)
    settings: object = None
    try:
        read_settings = getattr(args, "settings", None)
        if read_settings is None:
            return int(args.func(args) or 0)
        settings = read_settings(os.environ)
        return int(args.func(args, settings) or 0)
    except ConfigError as exc:
        print(f"tenant-metrics: configuration error: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        from tenant_metrics.core.db import describe_failure

        print(f"tenant-metrics: database unavailable: {describe_failure(_database_url(settings), exc)}",
              file=sys.stderr)
        return 1
    except TenantMetricsError as exc:
        print(f"tenant-metrics: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _database_url(settings: object) -> str:
    """The URL a command's settings name (for the error line; the password is never shown)."""
    if isinstance(settings, DatabaseSettings):
        return settings.url
    database = getattr(settings, "database", None)
    return database.url if isinstance(database, DatabaseSettings) else ""


if __name__ == "__main__":
    sys.exit(main())
