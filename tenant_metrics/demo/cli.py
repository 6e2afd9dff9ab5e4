"""`tenant-metrics demo`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "demo",
        help="run the whole system locally (fake Aiven and Cloud Controller, sd, Prometheus, broker, gateway)",
        description="Starts everything on loopback with a SQLite database in --dir (recreated on each run), "
        "provisions and binds two example tenants through the broker, prints what to try (service keys, "
        "and the dashboard URLs with demo users for single sign-on), and runs until Ctrl-C. Prometheus "
        "is used when Debian's 'prometheus' package is installed.",
    )
    parser.add_argument("--dir", type=Path, default=Path("demo-data"), help="working directory (default ./demo-data)")
    parser.add_argument("--ready-file", type=Path, help="write the endpoints and credentials here as JSON when ready")
    parser.add_argument("--no-sso", dest="sso", action="store_false",
                        help="leave dashboard single sign-on off (the dashboard URL is then the tenant page)")
    parser.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from tenant_metrics.demo.runner import run

    return run(args.dir, ready_file=args.ready_file, sso=args.sso)
