"""The loopback Aiven-like exporter: real HTTP(S), basic auth, Telegraf-style names that move."""

from __future__ import annotations

import subprocess
from pathlib import Path

import requests

from tenant_metrics.fakes import exporter


def test_serves_aiven_like_metrics_with_basic_auth() -> None:
    with exporter.start(
        "127.0.0.2", 0, service="prod-abc", node="prod-abc-2", username="u", password="p"
    ) as node:
        assert node.url.startswith("http://127.0.0.2:")
        assert requests.get(node.url, timeout=5).status_code == 401
        assert requests.get(node.url, auth=("u", "wrong"), timeout=5).status_code == 401
        resp = requests.get(node.url, auth=("u", "p"), timeout=5)
        assert resp.status_code == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        body = resp.text
        assert 'cpu_usage_idle{cloud="aws-eu-west-2",cpu="cpu-total",host="prod-abc-2",' in body
        for name in (
            "disk_used_percent",
            "mem_available_percent",
            "system_load1",
            "net_bytes_recv",
            "opensearch_clusterstats_indices_count",
            "opensearch_cluster_health_status_code",
            "opensearch_jvm_mem_heap_used_percent",
        ):
            assert f"\n{name}{{" in body
        assert 'service="prod-abc"' in body and 'service_type="opensearch"' in body
        assert node.scrapes == 1
        assert requests.get(node.url.replace("/metrics", "/other"), timeout=5).status_code == 404


def test_values_move_and_legacy_type_uses_elasticsearch_family() -> None:
    first = exporter.render_metrics(
        exporter.NodeIdentity("s", "s-1", service_type="elasticsearch"), 0.0, 1
    )
    later = exporter.render_metrics(
        exporter.NodeIdentity("s", "s-1", service_type="elasticsearch"), 60.0, 2
    )
    assert "elasticsearch_cluster_health_status_code{" in first and "opensearch_" not in first
    assert first != later


def test_exposition_is_valid_for_promtool(tmp_path: Path) -> None:
    body = exporter.render_metrics(exporter.NodeIdentity('svc "q"', "svc-1"), 12.5, 3)
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, text=True, check=False
    )
    # promtool lints (e.g. missing HELP) on stdout/stderr but parse errors fail with "error while linting"
    assert "error while linting" not in result.stderr + result.stdout


def test_https(tmp_path: Path) -> None:
    cert, key = exporter.self_signed_cert(tmp_path, "localhost")
    with exporter.start("127.0.0.1", 0, tls=(cert, key)) as node:
        assert node.url.startswith("https://")
        url = node.url.replace("127.0.0.1", "localhost")
        resp = requests.get(url, auth=("prometheus", "prometheus-password"), verify=cert, timeout=5)
        assert resp.status_code == 200 and "system_load1" in resp.text
