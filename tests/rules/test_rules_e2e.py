"""End to end: a real Prometheus loads the shipped rules (``for`` shortened, expressions as
shipped), scrapes Aiven-like exporters through sd's targets, and a red cluster fires the red
alert with its tenant's labels only."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tenant_metrics.core.labels import TARGET_LABELS
from tenant_metrics.fakes import exporter
from tenant_metrics.rules import parse_duration, render_rules
from tests.sd.conftest import Harness
from tests.support import free_port, wait_http

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
NODE_ADDRESSES = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
EVAL_SECONDS = 1.0
FOR_SCALE = 1 / 150  # 5m -> 2s, 30m -> 12s, 1h -> 24s
SLACK_SECONDS = 1.0  # our polling (every 0.2s) and the HTTP round trips


def _port_free_on_all(addresses: list[str]) -> int:
    """One port to give every exporter: sd's targets use a single scrape port for all nodes."""
    for _ in range(50):
        port = free_port()
        try:
            for addr in addresses:
                with socket.socket() as s:
                    s.bind((addr, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free on every loopback address")


def _wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def _api(base: str, path: str, **params: str) -> Any:
    resp = requests.get(base + path, params=params, timeout=10)
    resp.raise_for_status()
    return resp.json()["data"]


def _owner_labels(metric: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in metric.items() if k in TARGET_LABELS}


def test_red_cluster_fires_the_red_alert_for_its_tenant_only(
    sqlite_harness: Harness, prometheus_binary: str, tmp_path: Path
) -> None:
    h = sqlite_harness
    cert, key = exporter.self_signed_cert(tmp_path / "tls", "aivencloud.test")
    h.aiven.ca_certificate = Path(cert).read_text()  # type: ignore[attr-defined]
    scrape_port = _port_free_on_all(NODE_ADDRESSES)
    red = h.tenant(name="orders-search", org="dept-a", space="prod", node_count=2)
    green = h.tenant(name="logs", org="dept-b", space="staging", node_count=1, integrated=True)
    layout = {red.aiven_name: NODE_ADDRESSES[0:2], green.aiven_name: [NODE_ADDRESSES[2]]}
    nodes: dict[str, list[exporter.RunningExporter]] = {}
    prom: subprocess.Popen[bytes] | None = None
    try:
        for name, addresses in layout.items():
            h.resolver.table[h.aiven.host_of(name)] = addresses
            nodes[name] = [
                exporter.start(
                    addr,
                    scrape_port,
                    service=name,
                    node=f"{name}-{i}",
                    project=h.aiven.project,
                    username="prom-scraper",
                    password="scrape-secret-123",
                    tls=(cert, key),
                )
                for i, addr in enumerate(addresses, start=1)
            ]
        app = h.app(SD_SCRAPE_PORT=str(scrape_port))
        assert app.discovery.run_cycle().ok

        rules_file = tmp_path / "rules.yml"
        rules_file.write_text(render_rules(for_scale=FOR_SCALE, interval=f"{EVAL_SECONDS:g}s"))
        printed = subprocess.run(
            [
                sys.executable, "-m", "tenant_metrics", "sd", "prometheus-config",
                "--rules-path", str(rules_file),
            ],
            cwd=ROOT,
            env={"PATH": os.environ["PATH"], **h.env, "SD_SCRAPE_PORT": str(scrape_port)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert printed.returncode == 0, printed.stderr
        config = yaml.safe_load(printed.stdout)
        assert config["rule_files"] == [str(rules_file)]
        job = config["scrape_configs"][0]
        job.update(scrape_interval="1s", scrape_timeout="1s")
        job["file_sd_configs"][0]["refresh_interval"] = "1s"
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": f"{EVAL_SECONDS:g}s"}
        config_file = tmp_path / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))

        web = f"127.0.0.1:{free_port()}"
        base = f"http://{web}"
        prom = subprocess.Popen(
            [
                prometheus_binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address={web}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_http(base + "/-/ready", timeout=60)

        groups = _api(base, "/api/v1/rules")["groups"]
        assert {g["name"] for g in groups} == {"aiven-search-alerts", "aiven-search-capacity"}

        # Everything green: the capacity rules record one series per service, owner labels kept.
        def recorded() -> list[dict[str, Any]] | None:
            result = _api(base, "/api/v1/query", query="aiven_service:disk_used_percent:max")["result"]
            return result if len(result) == 2 else None

        series = _wait_for(recorded, 60, "a recorded disk series per service")
        by_guid = {s["metric"]["cf_service_instance_guid"]: s["metric"] for s in series}
        assert set(by_guid) == {red.guid, green.guid}
        for metric in by_guid.values():
            assert set(metric) == {"__name__", *TARGET_LABELS}
        red_labels = _owner_labels(by_guid[red.guid])
        assert (red_labels["cf_organization_guid"], red_labels["cf_space_name"]) == (
            red.org_guid,
            "prod",
        )
        time.sleep(3 * EVAL_SECONDS)
        assert _api(base, "/api/v1/alerts")["alerts"] == []  # green clusters fire nothing

        for node in nodes[red.aiven_name]:
            node.knobs.status_code = 3
        red_query = (
            f'max(opensearch_cluster_health_status_code{{cf_service_instance_guid="{red.guid}"}}) == 3'
        )
        _wait_for(
            lambda: _api(base, "/api/v1/query", query=red_query)["result"], 30, "the red sample"
        )
        seen_red = time.monotonic()
        red_for = parse_duration("5m") * FOR_SCALE / 1000
        bound = red_for + 2 * EVAL_SECONDS + SLACK_SECONDS

        def firing() -> list[dict[str, Any]]:
            alerts = _api(base, "/api/v1/alerts")["alerts"]
            return [a for a in alerts if a["state"] == "firing"]

        fired = _wait_for(firing, bound, f"the red alert within {bound:.1f}s")
        took = time.monotonic() - seen_red
        print(f"red alert firing {took:.2f}s after Prometheus had the red sample (bound {bound:.1f}s)")
        assert took <= bound
        assert len(fired) == 1, fired
        alert = fired[0]
        assert alert["labels"] == {
            "alertname": "AivenSearchClusterRed",
            "audience": "tenant",
            "severity": "critical",
            **red_labels,
        }
        assert alert["annotations"]["summary"] == "orders-search: search cluster is red"
        assert "space prod, organization dept-a" in alert["annotations"]["description"]
        # Nothing at all, pending or firing, carries the green tenant's labels.
        everything = _api(base, "/api/v1/alerts")["alerts"]
        assert all(a["labels"]["cf_service_instance_guid"] == red.guid for a in everything)
        assert not any(green.org_guid in str(a) for a in everything)
    finally:
        if prom is not None:
            prom.terminate()
            try:
                prom.wait(timeout=20)
            except subprocess.TimeoutExpired:
                prom.kill()
                prom.wait()
            if prom.stderr is not None:
                prom.stderr.close()
        for running in nodes.values():
            for node in running:
                node.stop()
