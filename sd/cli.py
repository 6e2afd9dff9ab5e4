"""`tenant-metrics` subcommands for sd: run, once, prometheus-config, prometheus-rules,
alertmanager-config, and the admin `owner` lookup."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenant_metrics.core.config import DatabaseSettings
from tenant_metrics.core.errors import ConfigError

if TYPE_CHECKING:
    from sd.config import OwnerLookupSettings, SdSettings

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    sd = sub.add_parser(
        "sd", help="service discovery: integrate Aiven services, write Prometheus targets"
    )
    sd_sub = sd.add_subparsers(dest="sd_command", metavar="ACTION", required=True)
    run = sd_sub.add_parser(
        "run",
        help="discover forever (SD_INTERVAL_SECONDS, with jitter); "
        "serves /metrics, /targets (http_sd) and /healthz on SD_LISTEN_PORT",
    )
    run.set_defaults(func=_run, settings=_settings)
    once = sd_sub.add_parser(
        "once", help="one discovery cycle; exit status 1 if any part of it failed"
    )
    once.set_defaults(func=_once, settings=_settings)
    cfg = sd_sub.add_parser(
        "prometheus-config",
        help="print the Prometheus scrape job reading sd's targets (file_sd: the targets file; "
        "http_sd: sd's /targets URL); writes the endpoint password, the project CA and sd's "
        "credential to files it references",
    )
    cfg.add_argument(
        "--mode",
        choices=["file_sd", "http_sd"],
        default="file_sd",
        help="file_sd (default): Prometheus reads SD_TARGETS_FILE beside it; http_sd: "
        "Prometheus reads --sd-url with SD_HTTP_* credentials",
    )
    cfg.add_argument(
        "--sd-url",
        help="http_sd: sd's /targets URL, e.g. https://tenant-metrics-sd.<apps domain>/targets",
    )
    cfg.add_argument(
        "--sd-credentials-file",
        help="http_sd: where to write sd's password or bearer token (SD_HTTP_PASSWORD or "
        "SD_HTTP_BEARER_TOKEN) for Prometheus (default: beside the targets file)",
    )
    cfg.add_argument(
        "--sd-ca-file",
        help="http_sd: the CA certificate (a path on the Prometheus host) that signed sd's "
        "route certificate, when it is not in the system's trust store",
    )
    cfg.add_argument(
        "--refresh-interval", default="1m", help="how often Prometheus re-reads the targets"
    )
    cfg.add_argument(
        "--password-file",
        help="where to write the basic-auth password (default: beside the targets file)",
    )
    cfg.add_argument(
        "--ca-file", help="where to write the Aiven project CA (default: beside the targets file)"
    )
    cfg.add_argument("--job-name", default="aiven-tenant-services")
    cfg.add_argument(
        "--rules-path",
        default=None,
        help="rule file, directory or glob for rule_files: (default: the alert and capacity "
        "rules shipped with tenant-metrics, where it is installed; '' leaves rule_files out)",
    )
    cfg.add_argument(
        "--alertmanager-url",
        action="append",
        default=[],
        metavar="URL",
        help="an Alertmanager Prometheus sends alerts to (repeatable: one per replica), "
        "e.g. http://alertmanager.internal:9093; adds the alerting: section",
    )
    cfg.set_defaults(func=_prometheus_config, settings=_settings)
    register_rules(sd_sub)
    register_alertmanager(sd_sub)
    owner = sub.add_parser(
        "owner", help="admin: show the Cloud Foundry owner sd has for an Aiven service"
    )
    owner.add_argument("aiven_service_name")
    owner.set_defaults(func=_owner, settings=_owner_settings)
    _register_confirm_drop(sd_sub)


def _settings(env: Mapping[str, str]) -> SdSettings:
    from sd.config import SdSettings

    return SdSettings.from_env(env)


def _owner_settings(env: Mapping[str, str]) -> OwnerLookupSettings:
    from sd.config import OwnerLookupSettings

    return OwnerLookupSettings.from_env(env)


def _once(args: argparse.Namespace, settings: SdSettings) -> int:
    from sd.app import build

    app = build(settings)
    try:
        report = app.discovery.run_cycle()
    finally:
        app.close()
    return 0 if report.ok else 1


def _run(args: argparse.Namespace, settings: SdSettings) -> int:
    from sd.app import build
    from sd.server import SdHttpServer, staleness_health
    from tenant_metrics.core.httpauth import Access

    app = build(settings)
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        log.info("stopping", extra={"event": "sd_stopping", "signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    health = staleness_health(
        lambda: app.discovery.last_success, time.time(), max(3 * settings.interval_seconds, 300.0)
    )
    targets_access = Access(settings.http_auth)
    server = SdHttpServer(
        settings.listen_host,
        settings.listen_port,
        app.registry,
        app.state,
        health,
        targets_access=targets_access,
        metrics_access=settings.metrics,
    ).start()
    log.info(
        "sd running",
        extra={
            "event": "sd_started",
            "listen": server.url,
            "targets_auth": targets_access.mode,
            "metrics_auth": settings.metrics.mode,
            "targets_file": settings.targets_file,
            "interval": settings.interval_seconds,
        },
    )
    try:
        app.discovery.run_forever(stop, settings.interval_seconds)
    finally:
        server.stop()
        app.close()
    return 0


def _prometheus_config(args: argparse.Namespace, settings: SdSettings) -> int:
    from sd import promconfig
    from sd.aiven import AivenClient
    from sd.alertmanager import alerting_section
    from sd.writer import write_if_changed

    rule_files = _rule_files(args.rules_path)  # a bad path fails before anything is written
    alerting = alerting_section(args.alertmanager_url)  # likewise a bad --alertmanager-url
    if args.mode == "http_sd":
        promconfig.targets_url(args.sd_url)  # likewise a missing or bad --sd-url
    elif args.sd_ca_file:
        raise ConfigError("--sd-ca-file applies to --mode http_sd only")
    base = Path(settings.targets_file).resolve().parent
    password_file = Path(args.password_file or base / "aiven-prometheus-password")
    ca_file = Path(args.ca_file or base / "aiven-project-ca.pem")
    client = AivenClient(
        settings.aiven_api_url,
        settings.aiven_api_token,
        settings.aiven_project,
        timeout=settings.http_timeout_seconds,
    )
    try:
        endpoint = client.get_endpoint(settings.prometheus_endpoint_id)
        ca = client.project_ca()
    finally:
        client.close()
    if endpoint.type != "prometheus" or not endpoint.username or endpoint.password is None:
        raise ConfigError("AIVEN_PROMETHEUS_ENDPOINT_ID: not a prometheus endpoint with basic auth")
    # The password goes to a 0600 file, never to stdout (configs end up in repositories and logs).
    write_if_changed(password_file, endpoint.password.encode())
    os.chmod(password_file, 0o600)
    write_if_changed(ca_file, ca.encode())
    if args.mode == "http_sd":
        discovery = _http_sd(args, settings, base)
    else:
        discovery = promconfig.file_sd(
            str(Path(settings.targets_file).resolve()), args.refresh_interval
        )
    job = promconfig.scrape_job(
        targets_file=str(Path(settings.targets_file).resolve()),
        username=endpoint.username,
        password_file=str(password_file),
        ca_file=str(ca_file),
        job_name=args.job_name,
        discovery=discovery,
    )
    print(promconfig.render(job, rule_files, alerting), end="")
    return 0


def _http_sd(args: argparse.Namespace, settings: SdSettings, base: Path) -> dict[str, Any]:
    """The http_sd_configs entry; sd's secret goes to a 0600 file, never to stdout."""
    import sys

    from sd import promconfig
    from sd.writer import write_if_changed

    url = promconfig.targets_url(args.sd_url)
    ca_file = args.sd_ca_file or None
    auth = settings.http_auth
    if auth is None:
        print(
            "tenant-metrics: note: no SD_HTTP_PASSWORD or SD_HTTP_BEARER_TOKEN set: the "
            "http_sd config carries no credentials (sd on Cloud Foundry requires them)",
            file=sys.stderr,
        )
        return promconfig.http_sd(url, args.refresh_interval, ca_file=ca_file)
    secret = auth.password or auth.bearer_token
    credentials_file = Path(args.sd_credentials_file or base / "sd-http-credentials")
    write_if_changed(credentials_file, secret.encode())
    os.chmod(credentials_file, 0o600)
    if auth.password:
        return promconfig.http_sd(
            url, args.refresh_interval, username=auth.username, password_file=str(credentials_file),
            ca_file=ca_file,
        )
    return promconfig.http_sd(url, args.refresh_interval, token_file=str(credentials_file), ca_file=ca_file)


def _owner(args: argparse.Namespace, settings: OwnerLookupSettings) -> int:
    from sd import store
    from sd.owners import parse_instance_guid
    from tenant_metrics.core.db import make_engine, make_session_factory, session_scope

    prefix = settings.service_prefix
    guid = parse_instance_guid(args.aiven_service_name, prefix)
    out: dict[str, Any] = {
        "aiven_service_name": args.aiven_service_name,
        "prefix": prefix,
        "cf_service_instance_guid": guid,
    }
    if guid is None:
        out["owner"] = None
        out["reason"] = f"name is not '{prefix}-<cf service instance guid>'; sd ignores it"
        print(json.dumps(out, indent=2))
        return 1
    engine = make_engine(settings.database.url, settings.database.timeouts)
    try:
        with session_scope(make_session_factory(engine)) as session:
            row = store.load_one(session, guid)
    finally:
        engine.dispose()
    if row is None:
        out["owner"] = None
        out["reason"] = "not resolved yet (no answer from Cloud Controller remembered)"
        print(json.dumps(out, indent=2))
        return 1
    out["owner"] = {
        "cf_organization_guid": row.organization_guid,
        "cf_organization_name": row.organization_name,
        "cf_space_guid": row.space_guid,
        "cf_space_name": row.space_name,
        "cf_service_instance_name": row.instance_name,
        "missing_in_cloud_controller": row.missing,
        "refreshed_at": row.refreshed_at.isoformat(),
    }
    print(json.dumps(out, indent=2))
    return 0 if not row.missing else 1


# --- prometheus-rules: the platform's alert and capacity rules (tenant_metrics/rules) ---


def register_rules(sd_sub: Any) -> None:
    rules = sd_sub.add_parser(
        "prometheus-rules",
        help="print the alert and capacity rules for tenants' search services as one rule file",
    )
    rules.set_defaults(func=_prometheus_rules)


def _prometheus_rules(args: argparse.Namespace) -> int:
    from tenant_metrics.rules import render_rules

    print(render_rules(), end="")
    return 0


def _rule_files(rules_path: str | None) -> list[str]:
    """What ``rule_files:`` lists: the shipped rules by default; a directory means its *.yml.
    A path that matches no file is a configuration error (Prometheus would load nothing)."""
    import glob

    from tenant_metrics.rules import rules_glob

    if rules_path == "":
        return []
    pattern = rules_glob() if rules_path is None else rules_path
    if Path(pattern).is_dir():
        pattern = str(Path(pattern).resolve() / "*.yml")
    elif not glob.has_magic(pattern):
        pattern = str(Path(pattern).resolve())
    if not glob.glob(pattern):
        raise ConfigError(f"--rules-path: no rule file matches {pattern}")
    return [pattern]


def _register_confirm_drop(sd_sub: Any) -> None:
    confirm = sd_sub.add_parser(
        "confirm-drop",
        help="confirm that a mass target drop sd is withholding is real: every sd instance "
        "applies it on its next cycle (through the shared DB)",
    )
    confirm.add_argument(
        "--valid-for",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="how long the confirmation holds (default 600: every instance's next cycle)",
    )
    confirm.add_argument("--by", help="who confirms, for the record (default: user@host)")
    confirm.set_defaults(func=_confirm_drop, settings=DatabaseSettings.from_env)


def _confirm_drop(args: argparse.Namespace, database: DatabaseSettings) -> int:
    import getpass
    import socket
    from datetime import UTC, datetime, timedelta

    from sqlalchemy.exc import SQLAlchemyError

    from sd import dropconfirm
    from sd.app import sd_engine
    from tenant_metrics.core.db import make_session_factory, session_scope
    from tenant_metrics.core.errors import UpstreamError

    if not 0 < args.valid_for <= 86400:
        raise ConfigError("--valid-for must be between 0 and 86400 seconds")
    by = args.by or f"{getpass.getuser()}@{socket.gethostname()}"
    engine = sd_engine(database)
    try:
        with session_scope(make_session_factory(engine), write=True) as session:
            row = dropconfirm.confirm(
                session, by, datetime.now(UTC), timedelta(seconds=args.valid_for)
            )
    except SQLAlchemyError as exc:
        raise UpstreamError(f"database error: {type(exc).__name__}; nothing confirmed") from exc
    finally:
        engine.dispose()
    print(
        json.dumps(
            {
                "confirmed_by": row.confirmed_by,
                "confirmed_at": row.confirmed_at.isoformat(),
                "valid_until": row.expires_at.isoformat(),
            },
            indent=2,
        )
    )
    return 0


# --- alertmanager-config: an example Alertmanager routing for the platform alerts ---


def register_alertmanager(sd_sub: Any) -> None:
    am = sd_sub.add_parser(
        "alertmanager-config",
        help="print an example Alertmanager config: tenant alerts grouped per organization and "
        "service to the platform's support queue, with inhibit rules",
    )
    am.add_argument(
        "--support-receiver",
        required=True,
        metavar="URL|mailto:ADDRESS",
        help="the support queue tenant alerts (audience=tenant) go to: a webhook URL "
        "(e.g. the ticket system's) or mailto:support@example.com",
    )
    am.add_argument(
        "--platform-receiver",
        metavar="URL|mailto:ADDRESS",
        help="where every other alert goes (default: the support receiver)",
    )
    am.add_argument("--smtp-smarthost", metavar="HOST:PORT", help="for mailto: receivers")
    am.add_argument("--smtp-from", metavar="ADDRESS", help="for mailto: receivers")
    am.set_defaults(func=_alertmanager_config)


def _alertmanager_config(args: argparse.Namespace) -> int:
    from sd import alertmanager

    smtp = None
    if args.smtp_smarthost or args.smtp_from:
        if not (args.smtp_smarthost and args.smtp_from):
            raise ConfigError("--smtp-smarthost and --smtp-from go together")
        smtp = alertmanager.Smtp(args.smtp_smarthost, args.smtp_from)
    support = alertmanager.Receiver.parse("--support-receiver", args.support_receiver)
    platform = (
        alertmanager.Receiver.parse("--platform-receiver", args.platform_receiver)
        if args.platform_receiver
        else None
    )
    config = alertmanager.routing_config(support, platform, smtp)
    print(alertmanager.render(config), end="")
    return 0
