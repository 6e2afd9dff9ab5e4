"""`tenant-metrics sd alertmanager-config` and `sd prometheus-config --alertmanager-url`:
real processes, checked by Debian's amtool and promtool."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sd import alertmanager
from tests.rules.conftest import _binary
from tests.sd.conftest import Harness

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def amtool() -> str:
    return _binary("amtool", "prometheus-alertmanager")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenant_metrics", "sd", *args],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _check(amtool: str, text: str, tmp_path: Path) -> str:
    path = tmp_path / "alertmanager.yml"
    path.write_text(text)
    done = subprocess.run(
        [amtool, "check-config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_webhook_routing_config_passes_amtool_and_routes_per_org_and_service(
    amtool: str, tmp_path: Path
) -> None:
    done = _cli("alertmanager-config", "--support-receiver", "https://support.example.com/hook")
    assert done.returncode == 0, done.stderr
    out = _check(amtool, done.stdout, tmp_path)
    assert "3 inhibit rules" in out and "2 receivers" in out
    config = yaml.safe_load(done.stdout)
    route = config["route"]
    assert route["group_by"] == ["alertname", "cf_organization_guid", "cf_service_instance_guid"]
    assert route["routes"] == [
        {"matchers": ['audience="tenant"'], "receiver": alertmanager.SUPPORT_RECEIVER}
    ]
    receivers = {r["name"]: r for r in config["receivers"]}
    assert receivers[alertmanager.SUPPORT_RECEIVER]["webhook_configs"][0]["url"] == (
        "https://support.example.com/hook"
    )
    inhibit = {r["source_matchers"][0]: r for r in config["inhibit_rules"]}
    assert inhibit['alertname="AivenSearchClusterRed"']["target_matchers"] == [
        'alertname=~"AivenSearchClusterYellow"'
    ]
    assert inhibit['alertname="AivenSearchDiskFloodStage"']["target_matchers"] == [
        'alertname=~"AivenSearchDiskHighWatermark|AivenSearchDiskLowWatermark"'
    ]
    assert inhibit['alertname="AivenSearchMetricsUnavailable"']["target_matchers"] == [
        'alertname=~"AivenSearchNodeNotScraped|AivenSearchNodeOutOfCluster"'
    ]
    assert all(r["equal"] == ["cf_service_instance_guid"] for r in config["inhibit_rules"])


def test_inhibited_and_inhibiting_alerts_are_shipped_rules() -> None:
    """A renamed alert must not silently disable an inhibit rule."""
    from tenant_metrics.rules import groups

    shipped = {r["alert"] for g in groups() for r in g["rules"] if "alert" in r}
    for source, targets in alertmanager.INHIBITIONS:
        assert {source, *targets} <= shipped


def test_email_routing_config_names_the_org_in_the_subject(amtool: str, tmp_path: Path) -> None:
    done = _cli(
        "alertmanager-config",
        "--support-receiver", "mailto:support@example.com",
        "--platform-receiver", "https://ops.example.com/hook",
        "--smtp-smarthost", "smtp.example.com:587",
        "--smtp-from", "alertmanager@example.com",
    )
    assert done.returncode == 0, done.stderr
    _check(amtool, done.stdout, tmp_path)
    receivers = {r["name"]: r for r in yaml.safe_load(done.stdout)["receivers"]}
    email = receivers[alertmanager.SUPPORT_RECEIVER]["email_configs"][0]
    assert email["to"] == "support@example.com"
    assert email["headers"]["Subject"].split("] ")[1].startswith(
        "{{ .CommonLabels.cf_organization_name }}"
    )
    assert receivers[alertmanager.PLATFORM_RECEIVER]["webhook_configs"][0]["url"] == (
        "https://ops.example.com/hook"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--support-receiver", "ftp://x"], "must be an http(s) webhook URL or mailto:ADDRESS"),
        (["--support-receiver", "https://u:p@x.example/h"], "must not carry credentials"),
        (["--support-receiver", "mailto:a@b, c@d"], "not one email address"),
        (["--support-receiver", "mailto:a@example.com"], "needs --smtp-smarthost and --smtp-from"),
        (
            ["--support-receiver", "https://x.example/h", "--smtp-from", "a@example.com"],
            "--smtp-smarthost and --smtp-from go together",
        ),
    ],
)
def test_bad_receivers_are_clear_errors(args: list[str], message: str) -> None:
    done = _cli("alertmanager-config", *args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_prometheus_config_alertmanager_urls_pass_promtool(
    sqlite_harness: Harness, promtool: str
) -> None:
    h = sqlite_harness
    done = _cli(
        "prometheus-config",
        "--alertmanager-url", "http://am-0.internal:9093",
        "--alertmanager-url", "http://am-1.internal:9093/",
        "--alertmanager-url", "https://alerts.example.com/alertmanager",
        env={"HOME": str(h.tmp_path), **h.env},
    )
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    assert config["alerting"] == {
        "alertmanagers": [
            {
                "scheme": "http",
                "api_version": "v2",
                "static_configs": [{"targets": ["am-0.internal:9093", "am-1.internal:9093"]}],
            },
            {
                "scheme": "https",
                "api_version": "v2",
                "path_prefix": "/alertmanager",
                "static_configs": [{"targets": ["alerts.example.com:443"]}],
            },
        ]
    }
    path = h.tmp_path / "prometheus.yml"
    path.write_text(done.stdout)
    check = subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # Without the option there is no alerting section (the config stays as before).
    plain = _cli("prometheus-config", env={"HOME": str(h.tmp_path), **h.env})
    assert "alerting" not in yaml.safe_load(plain.stdout)


def test_a_bad_alertmanager_url_is_a_clear_error_before_anything_is_written(
    sqlite_harness: Harness,
) -> None:
    h = sqlite_harness
    done = _cli(
        "prometheus-config", "--alertmanager-url", "am.internal:9093",
        env={"HOME": str(h.tmp_path), **h.env},
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert "--alertmanager-url must be an http(s) URL with a host" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (h.targets_file.parent / "aiven-prometheus-password").exists()
