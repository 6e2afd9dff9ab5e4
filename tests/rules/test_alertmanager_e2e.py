"""End to end: a real Prometheus evaluates the shipped rules (``for`` shortened) and sends to a
real Alertmanager running the printed routing config; the support queue is a webhook served
here. The red cluster's alert reaches it with its tenant's labels only, and a yellow alert for
the same service is inhibited while one for another service is not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from sd import alertmanager
from tenant_metrics.core.labels import TARGET_LABELS
from tenant_metrics.fakes import exporter
from tenant_metrics.rules import render_rules
from tenant_metrics.world import (
    Child,
    free_port,
    serve_wsgi,
    spawn_ready,
    start_prometheus,
    wait_until,
)
from tests.rules.conftest import _binary
from tests.sd.conftest import Harness

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
NODE_ADDRESSES = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
FOR_SCALE = 1 / 150  # 5m -> 2s


class Webhook:
    """The support queue: records each Alertmanager webhook notification (JSON body)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[dict[str, Any]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length) or b"null")
        with self._lock:
            self._received.append(body)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert of every notification so far, with its notification's commonLabels."""
        with self._lock:
            return [
                {**alert, "commonLabels": n["commonLabels"], "receiver": n["receiver"]}
                for n in self._received
                for alert in n["alerts"]
            ]


def _start_alertmanager(binary: str, workdir: Path, config: dict[str, Any]) -> Child:
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        binary,
        f"--config.file={config_file}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # no gossip port: one instance, nothing on 0.0.0.0:9094
        "--log.level=warn",
    ]
    return spawn_ready(
        "alertmanager", argv, workdir / "alertmanager.log", url=url, ready_path="/-/ready", timeout=60
    )


def _am_alerts(base: str) -> list[dict[str, Any]]:
    resp = requests.get(base + "/api/v2/alerts", timeout=10)
    resp.raise_for_status()
    result: list[dict[str, Any]] = resp.json()
    return result


def _post_alert(base: str, labels: dict[str, str]) -> None:
    """An alert as any other Prometheus would send it (the shipped rules' bands are disjoint,
    so one Prometheus never fires red and yellow for one service at once)."""
    now = datetime.now(UTC)
    body = [
        {
            "labels": labels,
            "annotations": {"summary": "posted by the test"},
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(minutes=5)).isoformat(),
        }
    ]
    requests.post(base + "/api/v2/alerts", json=body, timeout=10).raise_for_status()


def test_red_alert_reaches_the_support_webhook_for_its_tenant_and_yellow_is_inhibited(
    sqlite_harness: Harness, prometheus_binary: str, tmp_path: Path
) -> None:
    am_binary = _binary("prometheus-alertmanager", "prometheus-alertmanager")
    h = sqlite_harness
    cert, key = exporter.self_signed_cert(tmp_path / "tls", "aivencloud.test")
    h.aiven.ca_certificate = Path(cert).read_text()  # type: ignore[attr-defined]
    scrape_port = free_port(NODE_ADDRESSES)
    red = h.tenant(name="orders-search", org="dept-a", space="prod", node_count=2)
    green = h.tenant(name="logs", org="dept-b", space="staging", node_count=1, integrated=True)
    layout = {red.aiven_name: NODE_ADDRESSES[0:2], green.aiven_name: [NODE_ADDRESSES[2]]}
    nodes: dict[str, list[exporter.RunningExporter]] = {}
    webhook = Webhook()
    prom: Child | None = None
    am: Child | None = None
    with serve_wsgi(webhook) as hook_url:
        try:
            for name, addresses in layout.items():
                h.resolver.table[h.aiven.host_of(name)] = addresses
                nodes[name] = [
                    exporter.start(
                        addr, scrape_port, service=name, node=f"{name}-{i}",
                        project=h.aiven.project, username="prom-scraper",
                        password="scrape-secret-123", tls=(cert, key),
                    )
                    for i, addr in enumerate(addresses, start=1)
                ]
            app = h.app(SD_SCRAPE_PORT=str(scrape_port))
            assert app.discovery.run_cycle().ok

            # Alertmanager with the printed routing; only the timings shortened.
            printed_am = subprocess.run(
                [sys.executable, "-m", "tenant_metrics", "sd", "alertmanager-config",
                 "--support-receiver", hook_url + "/support"],
                cwd=ROOT, env={"PATH": os.environ["PATH"]},
                capture_output=True, text=True, timeout=60, check=False,
            )
            assert printed_am.returncode == 0, printed_am.stderr
            am_config = yaml.safe_load(printed_am.stdout)
            am_config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
            am = _start_alertmanager(am_binary, tmp_path / "alertmanager", am_config)

            rules_file = tmp_path / "rules.yml"
            rules_file.write_text(render_rules(for_scale=FOR_SCALE, interval="1s"))
            printed = subprocess.run(
                [sys.executable, "-m", "tenant_metrics", "sd", "prometheus-config",
                 "--rules-path", str(rules_file), "--alertmanager-url", am.url],
                cwd=ROOT,
                env={"PATH": os.environ["PATH"], **h.env, "SD_SCRAPE_PORT": str(scrape_port)},
                capture_output=True, text=True, timeout=60, check=False,
            )
            assert printed.returncode == 0, printed.stderr
            config = yaml.safe_load(printed.stdout)
            job = config["scrape_configs"][0]
            job.update(scrape_interval="1s", scrape_timeout="1s")
            job["file_sd_configs"][0]["refresh_interval"] = "1s"
            config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
            prom = start_prometheus(tmp_path / "prometheus", config, binary=prometheus_binary)

            # Prometheus has found the Alertmanager; then the red cluster turns red.
            def discovered() -> bool:
                resp = requests.get(prom.url + "/api/v1/alertmanagers", timeout=10).json()
                return bool(resp["data"]["activeAlertmanagers"])

            wait_until(discovered, 30, "Prometheus to discover the Alertmanager")
            for node in nodes[red.aiven_name]:
                node.knobs.status_code = 3

            def notified(name: str) -> Callable[[], list[dict[str, Any]]]:
                return lambda: [a for a in webhook.alerts() if a["labels"]["alertname"] == name]

            got = wait_until(notified("AivenSearchClusterRed"), 60, "the red alert at the webhook")
            alert = got[0]
            assert alert["receiver"] == alertmanager.SUPPORT_RECEIVER
            assert alert["status"] == "firing"
            labels = alert["labels"]
            assert set(labels) == {"alertname", "audience", "severity", *TARGET_LABELS}
            assert (labels["cf_organization_guid"], labels["cf_organization_name"]) == (
                red.org_guid, "dept-a",
            )
            assert (labels["cf_space_name"], labels["cf_service_instance_guid"]) == (
                "prod", red.guid,
            )
            # The notification itself names the organization (what the support queue shows).
            assert alert["commonLabels"]["cf_organization_name"] == "dept-a"

            # A yellow alert for the red service is inhibited; one for another service is not.
            owner = {k: labels[k] for k in TARGET_LABELS}
            green_owner = {**owner, "cf_organization_guid": green.org_guid,
                           "cf_organization_name": "dept-b", "cf_space_name": "staging",
                           "cf_service_instance_guid": green.guid}
            yellow = {"alertname": "AivenSearchClusterYellow", "audience": "tenant",
                      "severity": "warning"}
            _post_alert(am.url, {**yellow, **owner})
            _post_alert(am.url, {**yellow, **green_owner})
            wait_until(notified("AivenSearchClusterYellow"), 30, "the other service's yellow alert")

            def suppressed() -> list[dict[str, Any]]:
                return [
                    a for a in _am_alerts(am.url)
                    if a["labels"]["alertname"] == "AivenSearchClusterYellow"
                    and a["labels"]["cf_service_instance_guid"] == red.guid
                    and a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"]
                ]

            wait_until(suppressed, 10, "Alertmanager to mark the red service's yellow inhibited")
            time.sleep(3)  # three group intervals: an uninhibited alert would have been sent
            yellows = notified("AivenSearchClusterYellow")()
            assert {a["labels"]["cf_service_instance_guid"] for a in yellows} == {green.guid}
            # Everything the red cluster caused reached the queue for its tenant only.
            for a in webhook.alerts():
                if a["labels"]["alertname"] != "AivenSearchClusterYellow":
                    assert a["labels"]["cf_service_instance_guid"] == red.guid, a
        finally:
            for child in (prom, am):
                if child is not None:
                    child.stop()
            for running in nodes.values():
                for node in running:
                    node.stop()
