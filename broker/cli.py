"""`tenant-metrics` subcommands for the broker: serve it, list an org's instances, revoke a binding."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from broker.config import BrokerSettings, from_env
from broker.domain import AuditAction, Caller
from broker.store import Store
from tenant_metrics.core.config import DatabaseSettings
from tenant_metrics.core.db import make_engine

OPERATOR = Caller(platform="operator-cli", user_id="operator")


def register(sub: Any) -> None:
    """Add this part's subcommands to the CLI."""
    serve = sub.add_parser(
        "broker",
        help="serve the Open Service Broker with gunicorn",
        description="Serve the broker with gunicorn (broker/gunicorn_conf.py). Binds 127.0.0.1:$PORT "
        "(default 8080) unless --host says otherwise; on Cloud Foundry the manifest runs gunicorn "
        "directly, bound to 0.0.0.0:$PORT. Needs BROKER_USERNAME and BROKER_PASSWORD.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--workers", type=int, default=None, help="gunicorn workers (default $WEB_CONCURRENCY or 2)")
    serve.set_defaults(func=_serve, settings=from_env)

    instances = sub.add_parser("instances", help="list an org's metrics instances and their bindings (no secrets)")
    instances.add_argument("--org", required=True, metavar="GUID", help="Cloud Foundry organization guid")
    instances.add_argument("--json", action="store_true", help="print JSON instead of a table")
    instances.set_defaults(func=_instances, settings=DatabaseSettings.from_env)

    revoke = sub.add_parser("revoke", help="delete a binding's credentials now (audited as user 'operator')")
    revoke.add_argument("binding_id", metavar="BINDING_ID")
    revoke.set_defaults(func=_revoke, settings=DatabaseSettings.from_env)


def _serve(args: argparse.Namespace, settings: BrokerSettings) -> int:
    # settings were validated before gunicorn starts; its workers read the same environment.
    env = dict(os.environ)
    env["GUNICORN_BIND"] = f"{args.host}:{settings.port}"
    if args.workers is not None:
        env["WEB_CONCURRENCY"] = str(args.workers)
    argv = [sys.executable, "-m", "gunicorn", "--config", "python:broker.gunicorn_conf", "broker.app:create_app()"]
    # Secrets stay in the environment, never in argv (visible in ps).
    os.execve(sys.executable, argv, env)
    return 0  # pragma: no cover - execve does not return


def _store(settings: DatabaseSettings) -> Store:
    return Store(make_engine(settings.url, settings.timeouts))


def _instances(args: argparse.Namespace, settings: DatabaseSettings) -> int:
    store = _store(settings)
    try:
        found = store.instances_of_org(args.org)
    finally:
        store.engine.dispose()
    rows: list[dict[str, Any]] = [
        {
            "instance_id": inst.id,
            "instance_name": inst.instance_name,
            "plan": inst.scope.value,
            "organization_guid": inst.organization_guid,
            "space_guid": inst.space_guid,
            "space_name": inst.space_name,
            "bindings": [
                {"binding_id": b.id, "kind": b.kind.value, "app_guid": b.app_guid, "username": b.username}
                for b in bindings
            ],
        }
        for inst, bindings in found
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no metrics instances in org {args.org}")
        return 0
    for row in rows:
        print(f"instance {row['instance_id']}  name={row['instance_name'] or '-'}  plan={row['plan']}  "
              f"space={row['space_name'] or '-'} ({row['space_guid']})")
        for b in row["bindings"]:
            print(f"  binding {b['binding_id']}  kind={b['kind']}  app={b['app_guid'] or '-'}  username={b['username']}")
    return 0


def _revoke(args: argparse.Namespace, settings: DatabaseSettings) -> int:
    store = _store(settings)
    try:
        binding = store.find_binding(args.binding_id)
        store.unbind(binding.instance_id, binding.id, OPERATOR, action=AuditAction.REVOKE)
    finally:
        store.engine.dispose()
    print(f"revoked binding {binding.id} (username {binding.username}) of instance {binding.instance_id}")
    return 0
