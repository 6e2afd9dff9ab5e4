"""End to end, http_sd: sd runs as an app would on Cloud Foundry (its own process, /targets
behind basic auth) and a real Prometheus discovers the targets over HTTP with the config
``tenant-metrics sd prometheus-config --mode http_sd`` prints (sd's password from a
password_file), then scrapes the Aiven-like exporters. A Prometheus holding a wrong password
is refused (401) and discovers nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tenant_metrics.world import (
    FakeApis,
    children,
    free_port,
    part_env,
    running_exporters,
    start_part,
    start_prometheus,
    wait_until,
)
from tests.e2e.conftest import query
from tests.sd.conftest import Harness

pytestmark = pytest.mark.e2e
NODE_ADDRESSES = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
SD_USER = "prometheus"
SD_PASSWORD = "sd-http-secret-e2e-0123456789"


def _http_sd_config(env: dict[str, str], cwd: Path, sd_url: str, password_file: Path) -> dict[str, Any]:
    """What the operator runs beside Prometheus, with 1s intervals so the test sees data soon."""
    printed = subprocess.run(
        [sys.executable, "-m", "tenant_metrics", "sd", "prometheus-config", "--mode", "http_sd",
         "--sd-url", sd_url, "--sd-credentials-file", str(password_file), "--refresh-interval", "1s",
         "--rules-path", ""],
        env=part_env(env), cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )
    assert printed.returncode == 0, printed.stderr
    assert SD_PASSWORD not in printed.stdout
    job = yaml.safe_load(printed.stdout)["scrape_configs"][0]
    job.update(scrape_interval="1s", scrape_timeout="1s")
    return {"global": {"scrape_interval": "1s"}, "scrape_configs": [job]}


def _sd_counter(sd_url: str, code: str) -> float:
    text = requests.get(sd_url + "/metrics", auth=(SD_USER, SD_PASSWORD), timeout=5).text
    line = f'tenant_metrics_sd_http_requests_total{{code="{code}",path="/targets"}} '
    return next((float(row[len(line):]) for row in text.splitlines() if row.startswith(line)), 0.0)


def test_prometheus_discovers_sd_targets_over_http_sd_with_credentials(
    sd_world: tuple[Harness, FakeApis], prometheus_binary: str, tmp_path: Path
) -> None:
    h, apis = sd_world
    scrape_port = free_port(NODE_ADDRESSES)
    a = h.tenant(name="orders-search", org="dept-a", space="prod", node_count=2)
    b = h.tenant(name="logs", org="dept-b", space="staging", node_count=1, integrated=True)
    layout = {a.aiven_name: NODE_ADDRESSES[0:2], b.aiven_name: [NODE_ADDRESSES[2]]}
    dns = tmp_path / "dns.json"
    dns.write_text(json.dumps({h.aiven.host_of(name): addresses for name, addresses in layout.items()}))
    sd_port = free_port()
    settings = {
        **h.env, "SD_SCRAPE_PORT": str(scrape_port), "SD_DNS_OVERRIDES_FILE": str(dns), "SD_INTERVAL_SECONDS": "1",
        "SD_LISTEN_PORT": str(sd_port), "SD_HTTP_USERNAME": SD_USER, "SD_HTTP_PASSWORD": SD_PASSWORD,
    }
    with (
        running_exporters(layout, scrape_port, project="tm-e2e", username="prom-scraper",
                          password="scrape-secret-123", tls=(apis.cert, apis.key)) as nodes,
        children() as procs,
    ):
        sd = procs.add(start_part("sd", ["run"], tmp_path / "sd", settings, port=sd_port))
        targets_url = sd.url + "/targets"
        # Without or with a wrong credential: 401 and a challenge, never the targets.
        for auth in (None, (SD_USER, "wrong-password-0123456789")):
            refused = requests.get(targets_url, auth=auth, timeout=5)
            assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic ")
            assert a.aiven_name not in refused.text
        assert requests.get(sd.url + "/metrics", timeout=5).status_code == 401
        wait_until(lambda: requests.get(targets_url, auth=(SD_USER, SD_PASSWORD), timeout=5).status_code == 200
                   or None, 30, what="sd's first good cycle", alive=procs.check_alive)

        good = _http_sd_config(settings, tmp_path, targets_url, tmp_path / "secrets" / "sd-password")
        wrong_file = tmp_path / "secrets" / "wrong-password"
        bad = _http_sd_config({**settings, "SD_HTTP_PASSWORD": "wrong-password-0123456789"}, tmp_path,
                              targets_url, wrong_file)
        assert bad["scrape_configs"][0]["http_sd_configs"][0]["basic_auth"]["password_file"] == str(wrong_file)
        refused_before = _sd_counter(sd.url, "401")
        prom = procs.add(start_prometheus(tmp_path / "prometheus", good, binary=prometheus_binary)).url
        prom_bad = procs.add(start_prometheus(tmp_path / "prometheus-bad", bad, binary=prometheus_binary)).url

        up = wait_until(lambda: (r := query(prom, "up == 1")) and len(r) == 3 and r or None, 45,
                        what="3 targets up through http_sd", alive=procs.check_alive)
        assert {r["metric"]["instance"] for r in up} == {f"{ip}:{scrape_port}" for ip in NODE_ADDRESSES}
        series = wait_until(lambda: (r := query(prom, "system_load1")) and len(r) == 3 and r or None, 45,
                            what="system_load1 from 3 nodes")
        orgs = {s["metric"]["aiven_service_name"]: s["metric"]["cf_organization_guid"] for s in series}
        assert orgs == {a.aiven_name: a.org_guid, b.aiven_name: b.org_guid}
        assert all(n.scrapes > 0 for n in nodes)

        # The wrong password was tried (sd counted its 401s) and found nothing.
        wait_until(lambda: _sd_counter(sd.url, "401") >= refused_before + 2 or None, 30,
                   what="the wrong-password Prometheus to be refused twice")
        targets = requests.get(prom_bad + "/api/v1/targets", timeout=10).json()["data"]
        assert targets["activeTargets"] == [] and query(prom_bad, "up") == []
        assert _sd_counter(sd.url, "200") > 0
        log = (tmp_path / "sd" / "sd.log").read_text()
        started = [e for e in map(json.loads, filter(None, log.splitlines())) if e.get("event") == "sd_started"]
        assert started[0]["targets_auth"] == "basic" and started[0]["metrics_auth"] == "basic"
        assert SD_PASSWORD not in log
