"""The broker as production runs it: `tenant-metrics broker` execs gunicorn with several workers."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from broker.config import from_env
from tenant_metrics.world import free_port, spawn_ready
from tests.broker.conftest import PASSWORD, USERNAME, Osb, broker_env

WORKERS = 3


@pytest.fixture
def gunicorn_broker(database_url: str, tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    port = free_port()
    env = {**os.environ, **broker_env(database_url), "PORT": str(port), "LOG_LEVEL": "DEBUG"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log_path = tmp_path / "broker.log"
    exe = Path(sys.executable).with_name("tenant-metrics")
    base = f"http://127.0.0.1:{port}"
    broker = spawn_ready("broker", [str(exe), "broker", "--workers", str(WORKERS)], log_path, url=base,
                         ready_path="/healthz", timeout=30, env=env, cwd=tmp_path)
    try:
        yield base, log_path, database_url
    finally:
        status = broker.stop()
    assert status == 0, log_path.read_text()[-2000:]


def test_gunicorn_serves_osb_with_merged_metrics_and_clean_logs(gunicorn_broker: tuple[str, Path, str]) -> None:
    base, log_path, database_url = gunicorn_broker
    osb = Osb(base, from_env(broker_env(database_url)))
    assert osb.provision("inst-1").status_code == 201
    creds = osb.bind("inst-1", "bind-1").json()["credentials"]
    for _ in range(30):  # spread over the workers
        r = requests.get(base + "/v2/catalog", auth=(USERNAME, PASSWORD), headers={"X-Broker-API-Version": "2.17"},
                         timeout=10)
        assert r.status_code == 200
    bad = requests.put(base + "/v2/service_instances/x", data=b"[", auth=(USERNAME, PASSWORD), timeout=10,
                       headers={"X-Broker-API-Version": "2.17", "Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["description"]
    assert osb.unbind("inst-1", "bind-1").status_code == 200
    assert osb.deprovision("inst-1").status_code == 200
    osb.session.close()

    # Whichever worker answers /metrics, it reports the sum over all workers.
    for _ in range(5):
        exposed = requests.get(base + "/metrics", timeout=10).text
        found = re.search(r'tenant_metrics_broker_requests_total\{endpoint="catalog",method="GET",status="200"\} (\S+)', exposed)
        assert found is not None and float(found.group(1)) == 30.0, exposed[:2000]

    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is JSON, gunicorn's own included
    assert any(e["logger"].startswith("gunicorn") for e in entries)
    assert any(e["logger"] == "broker.app" and e.get("endpoint") == "bind" for e in entries)
    text_out = "\n".join(lines)
    basic = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    for secret in (PASSWORD, basic, creds["password"]):
        assert secret not in text_out


def test_broker_command_refuses_weak_password_before_starting(tmp_path: Path) -> None:
    env = {**os.environ, **broker_env(f"sqlite:///{tmp_path / 'x.sqlite3'}"), "BROKER_PASSWORD": "short"}
    exe = Path(sys.executable).with_name("tenant-metrics")
    done = subprocess.run([str(exe), "broker"], check=False, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "BROKER_PASSWORD must be at least 16 characters" in done.stderr
