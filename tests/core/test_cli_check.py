"""`tenant-metrics check`: every part's settings and the database, each problem named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run([sys.executable, "-m", "tenant_metrics", "check", *args], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=60)


def test_check_names_each_missing_setting_and_an_unmigrated_database(empty_database_url: str) -> None:
    out = _check({"DATABASE_URL": empty_database_url})
    assert out.returncode == 1
    assert "FAIL  broker: BROKER_USERNAME" in out.stdout or "FAIL  broker: BROKER_PASSWORD" in out.stdout
    assert "FAIL  sd:" in out.stdout
    assert "run 'tenant-metrics db upgrade'" in out.stdout


def test_check_passes_for_a_good_gateway_configuration(database_url: str) -> None:
    out = _check({"DATABASE_URL": database_url, "PROMETHEUS_URLS": "http://127.0.0.1:9090"}, "gateway")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok    gateway" in out.stdout and "ok    database" in out.stdout


def test_check_reports_an_unreachable_database() -> None:
    out = _check({"DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/none",
                  "PROMETHEUS_URLS": "http://127.0.0.1:9090"}, "gateway")
    assert out.returncode == 1
    assert "FAIL  database: database unavailable" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_check_names_each_dashboard_sso_problem_without_showing_the_secret(database_url: str) -> None:
    secret = "tiny-secret"
    out = _check({"DATABASE_URL": database_url, "BROKER_USERNAME": "cloud-controller",
                  "BROKER_PASSWORD": "correct-horse-battery-staple-42", "GATEWAY_PUBLIC_URL": "http://metrics.example.org",
                  "DASHBOARD_CLIENT_ID": "tenant metrics", "DASHBOARD_CLIENT_SECRET": secret}, "broker")
    assert out.returncode == 1
    for problem in ("DASHBOARD_CLIENT_ID must be 1 to 255", "DASHBOARD_CLIENT_SECRET must be at least 16 characters",
                    "GATEWAY_PUBLIC_URL must be https when DASHBOARD_CLIENT_ID is set"):
        assert f"FAIL  broker: {problem}" in out.stdout
    assert "ok    database" in out.stdout  # only the settings failed
    assert secret not in out.stdout + out.stderr and "Traceback" not in out.stdout + out.stderr


def test_check_names_the_gateways_sso_problems_without_showing_secrets(database_url: str) -> None:
    weak = "weak-session-secret"
    out = _check({"DATABASE_URL": database_url, "PROMETHEUS_URLS": "http://127.0.0.1:9090",
                  "DASHBOARD_CLIENT_ID": "tenant-metrics-dashboard", "SESSION_SECRET": weak,
                  "GATEWAY_PUBLIC_URL": "http://metrics.example.org"}, "gateway")
    assert out.returncode == 1
    for problem in ("DASHBOARD_CLIENT_SECRET is required", "CF_API_URL is required",
                    "GATEWAY_PUBLIC_URL must use https", "SESSION_SECRET must be at least 32 characters"):
        assert f"FAIL  gateway: {problem}" in out.stdout, out.stdout
    assert weak not in out.stdout + out.stderr and "Traceback" not in out.stdout + out.stderr
