"""`tenant-metrics gateway`: serve the tenant query gateway with gunicorn."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from gateway import config

GUNICORN_CONF = Path(__file__).resolve().parent / "gunicorn_conf.py"


def _serve(args: argparse.Namespace, settings: config.GatewaySettings) -> int:
    """``settings`` were read (and validated, every bad variable named) before forking;
    the workers read the same environment again in ``create_app``."""
    argv = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "gateway.app:create_app()"]
    if args.workers:
        os.environ["GATEWAY_WORKERS"] = str(args.workers)
    os.execv(sys.executable, argv)
    return 0  # pragma: no cover - execv does not return


def register(sub: Any) -> None:
    """Add `tenant-metrics gateway`."""
    parser = sub.add_parser(
        "gateway",
        help="serve the tenant query gateway (gunicorn; PROMETHEUS_URLS, DATABASE_URL, PORT)",
        description="Serve the label-enforcing Prometheus API for tenants with gunicorn. "
        "Settings come from the environment; see docs/gateway.md.",
    )
    parser.add_argument("--workers", type=int, default=0, help="gunicorn worker processes, one event loop each (default: one per CPU, at most 4)")
    parser.set_defaults(func=_serve, settings=config.from_env)
