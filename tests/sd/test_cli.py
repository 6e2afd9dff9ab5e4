"""The operator's commands, run as real processes against the fakes over loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

from tenant_metrics.world import free_port, wait_http
from tests.sd.conftest import ENDPOINT, Harness, fake_ips

ROOT = Path(__file__).resolve().parents[2]


def _env(h: Harness, **extra: str) -> dict[str, str]:
    overrides = h.tmp_path / "dns.json"
    overrides.write_text(
        json.dumps({h.aiven.host_of(n): fake_ips(h.aiven.host_of(n)) for n in h.aiven.services})
    )
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(h.tmp_path),
        **h.env,
        "SD_DNS_OVERRIDES_FILE": str(overrides),
        **extra,
    }


def _cli(h: Harness, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenant_metrics", *args],
        cwd=ROOT,
        env=_env(h, **extra),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_sd_once_then_owner(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    t = h.tenant(name="orders", org="dept", space="prod")
    done = _cli(h, "sd", "once")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    cycle = [entry for entry in lines if entry.get("event") == "sd_cycle"]
    assert cycle and cycle[0]["ok"] is True and cycle[0]["target_groups"] == 1
    assert (
        "aiven-test-token" not in done.stdout + done.stderr
        and "sd-secret" not in done.stdout + done.stderr
    )
    assert h.groups_by_service()[t.aiven_name]["labels"]["cf_organization_name"] == "dept"

    owner = _cli(h, "owner", t.aiven_name)
    assert owner.returncode == 0, owner.stderr
    shown = json.loads(owner.stdout)
    assert shown["cf_service_instance_guid"] == t.guid
    assert (
        shown["owner"]["cf_space_name"] == "prod"
        and shown["owner"]["cf_organization_guid"] == t.org_guid
    )
    unknown = _cli(h, "owner", "something-else")
    assert unknown.returncode == 1 and json.loads(unknown.stdout)["owner"] is None


def test_sd_once_fails_visibly_and_keeps_targets(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    h.tenant(integrated=True)
    assert _cli(h, "sd", "once").returncode == 0
    good = h.targets_file.read_bytes()
    h.aiven.add_fault("error", count=-1, status=503)
    failed = _cli(h, "sd", "once")
    assert failed.returncode == 1
    assert any(
        json.loads(line).get("event") == "sd_stage_failed" for line in failed.stdout.splitlines()
    )
    assert h.targets_file.read_bytes() == good


def test_bad_configuration_names_the_variable(sqlite_harness: Harness) -> None:
    done = _cli(sqlite_harness, "sd", "once", SD_INTERVAL_SECONDS="often")
    assert done.returncode == 2 and "SD_INTERVAL_SECONDS" in done.stderr
    assert "Traceback" not in done.stderr


def test_prometheus_config_is_valid_and_keeps_the_password_out_of_stdout(
    sqlite_harness: Harness,
) -> None:
    h = sqlite_harness
    done = _cli(h, "sd", "prometheus-config")
    assert done.returncode == 0, done.stderr
    assert "scrape-secret-123" not in done.stdout
    job = yaml.safe_load(done.stdout)["scrape_configs"][0]
    password_file = Path(job["basic_auth"]["password_file"])
    assert password_file.read_text() == "scrape-secret-123"
    assert oct(password_file.stat().st_mode & 0o777) == "0o600"
    assert job["basic_auth"]["username"] == "prom-scraper"
    assert Path(job["tls_config"]["ca_file"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert job["file_sd_configs"][0]["files"] == [str(h.targets_file.resolve())]
    config = h.tmp_path / "prometheus.yml"
    config.write_text(done.stdout)
    check = subprocess.run(
        ["promtool", "check", "config", "--syntax-only", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_sd_run_serves_and_stops_on_sigterm(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    h.tenant(integrated=True)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tenant_metrics", "sd", "run"],
        cwd=ROOT,
        env=_env(h, SD_LISTEN_PORT=str(port), SD_INTERVAL_SECONDS="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/targets", timeout=30)
        assert len(requests.get(base + "/targets", timeout=5).json()) == 1
        assert requests.get(base + "/healthz", timeout=5).json()["status"] == "ok"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the loop keeps cycling
            metrics = requests.get(base + "/metrics", timeout=5).text
            if 'tenant_metrics_sd_cycles_total{result="success"} 2.0' in metrics:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("sd run did not cycle twice")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert any(json.loads(line).get("event") == "sd_stopping" for line in out.splitlines())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_two_sd_processes_at_once_integrate_each_service_once(harness: Harness) -> None:
    h = harness
    h.aiven.duplicates = "accept"  # only our lease and re-check stand between us and duplicates
    h.aiven.add_fault("slow", count=-1, method="POST", seconds=0.05)
    tenants = [h.tenant() for _ in range(8)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tenant_metrics", "sd", "once"],
            cwd=ROOT,
            env=_env(h),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err + out[-3000:]
    for t in tenants:
        assert len(h.aiven.integrations_for(t.aiven_name, ENDPOINT)) == 1, t.aiven_name
    assert len(h.aiven.created_by) == len(tenants)
