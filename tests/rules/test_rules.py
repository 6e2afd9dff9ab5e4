"""The shipped alert and capacity rules: valid for Prometheus (promtool) and VictoriaMetrics
(vmalert), unit-tested with promtool's input series (tests/rules/*.test.yml), and written for
tenants: every alert keeps the owner labels and says what is wrong and what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tenant_metrics import rules
from tenant_metrics.core.errors import ConfigError
from tenant_metrics.core.labels import TARGET_LABELS
from tenant_metrics.fakes import exporter

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
UNIT_TESTS = sorted(HERE.glob("*.test.yml"))
SEVERITIES = {"info", "warning", "critical"}


def _run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(cmd), cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _shipped_rules() -> list[dict[str, Any]]:
    return [r for f in rules.rule_files() for g in f.load()["groups"] for r in g["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [r for r in _shipped_rules() if "alert" in r]


def _records() -> list[dict[str, Any]]:
    return [r for r in _shipped_rules() if "record" in r]


def _unit_tests() -> list[dict[str, Any]]:
    return [t for path in UNIT_TESTS for t in yaml.safe_load(path.read_text())["tests"]]


def test_the_shipped_files_are_the_ones_named() -> None:
    assert sorted(p.name for p in rules.RULES_DIR.glob("*.yml")) == sorted(rules.RULE_FILES)
    assert len(UNIT_TESTS) == len(rules.RULE_FILES)


@pytest.mark.parametrize("name", rules.RULE_FILES)
def test_promtool_checks_each_file(promtool: str, name: str) -> None:
    done = _run(promtool, "check", "rules", str(rules.RULES_DIR / name))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.mark.parametrize("path", UNIT_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests(promtool: str, path: Path) -> None:
    done = _run(promtool, "test", "rules", path.name, cwd=HERE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout and "FAILED" not in done.stdout


def test_promtool_unit_tests_catch_a_wrong_threshold(promtool: str, tmp_path: Path) -> None:
    """The unit tests can fail: the high watermark moved to 80% breaks them (disk at 80%)."""
    shipped = (rules.RULES_DIR / "aiven-search-alerts.yml").read_text()
    assert ") > 90 <= 95" in shipped
    (tmp_path / "alerts.yml").write_text(shipped.replace(") > 90 <= 95", ") >= 80 <= 95"))
    test = (HERE / "aiven-search-alerts.test.yml").read_text()
    (tmp_path / "alerts.test.yml").write_text(
        test.replace("../../tenant_metrics/rules/aiven-search-alerts.yml", "alerts.yml")
    )
    done = _run(promtool, "test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert done.returncode != 0
    assert "AivenSearchDiskHighWatermark" in done.stdout + done.stderr


@pytest.mark.parametrize("name", rules.RULE_FILES)
def test_vmalert_loads_each_file(vmalert: str, name: str) -> None:
    done = _run(vmalert, "-dryRun", f"-rule={rules.RULES_DIR / name}", "-loggerLevel=ERROR")
    assert done.returncode == 0, done.stdout + done.stderr


def test_vmalert_rejects_a_broken_file(vmalert: str, tmp_path: Path) -> None:
    """So the check above means something: vmalert's dry run fails on a bad template."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "groups:\n- name: x\n  rules:\n  - alert: A\n    expr: up\n"
        '    annotations:\n      summary: "{{ $value | nosuchfunc }}"\n'
    )
    done = _run(vmalert, "-dryRun", f"-rule={bad}", "-loggerLevel=ERROR")
    assert done.returncode != 0


def test_every_alert_is_written_for_the_tenant() -> None:
    alerts = _alerts()
    assert len(alerts) >= 10
    for rule in alerts:
        name = rule["alert"]
        assert rule["labels"]["audience"] == "tenant", name
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert rule.get("for"), f"{name}: no 'for' (would page on one sample)"
        summary, description = rule["annotations"]["summary"], rule["annotations"]["description"]
        assert "cf_service_instance_name" in summary, name
        assert len(description) > 120, name
        for label in TARGET_LABELS:
            assert label in rule["expr"], f"{name}: {label} not kept"


def test_every_alert_fires_with_the_tenant_labels_and_has_a_case_that_does_not() -> None:
    """Coverage of the promtool unit tests: every alert has a firing case whose exp_labels hold
    all of the owner labels, its severity and audience, plus its annotations; and a case where
    it must not fire."""
    cases: dict[str, list[list[dict[str, Any]]]] = {}
    for test in _unit_tests():
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], []).append(case.get("exp_alerts") or [])
    for rule in _alerts():
        name = rule["alert"]
        seen = cases.get(name, [])
        assert [] in seen, f"{name}: no case where it must not fire"
        fired = [alert for exp in seen for alert in exp]
        assert fired, f"{name}: no case where it fires"
        for alert in fired:
            labels = alert["exp_labels"]
            assert all(labels.get(label) for label in TARGET_LABELS), (name, labels)
            assert labels["severity"] == rule["labels"]["severity"], name
            assert labels["audience"] == "tenant", name
            assert set(alert["exp_annotations"]) == {"summary", "description"}, name


def test_every_recording_rule_is_named_by_convention_and_tested() -> None:
    tested = {
        case["expr"]: case["exp_samples"]
        for test in _unit_tests()
        for case in test.get("promql_expr_test", [])
    }
    for rule in _records():
        name = rule["record"]
        level, metric, operations = name.split(":")
        assert level == "aiven_service" and metric and operations, name
        assert tested.get(name), f"{name}: no promql_expr_test with samples"
        for sample in tested[name]:
            for label in TARGET_LABELS:
                assert f'{label}="' in sample["labels"], (name, label)


def test_render_rules_scales_for_and_keeps_the_expressions() -> None:
    shipped = {r.get("alert") or r["record"]: r for g in rules.groups() for r in g["rules"]}
    scaled_groups = yaml.safe_load(rules.render_rules(for_scale=1 / 150, interval="1s"))["groups"]
    assert [g["interval"] for g in scaled_groups] == ["1s"] * len(scaled_groups)
    scaled = {r.get("alert") or r["record"]: r for g in scaled_groups for r in g["rules"]}
    assert scaled.keys() == shipped.keys()
    for name, rule in scaled.items():
        assert rule["expr"] == shipped[name]["expr"], name
        assert rule.get("labels") == shipped[name].get("labels"), name
    assert scaled["AivenSearchClusterRed"]["for"] == "2s"  # 5m / 150
    assert scaled["AivenSearchClusterYellow"]["for"] == "12s"  # 30m / 150
    assert scaled["AivenSearchDiskFullInFourDays"]["for"] == "24s"  # 1h / 150
    assert yaml.safe_load(rules.render_rules())["groups"] == [
        g for f in rules.rule_files() for g in f.load()["groups"]
    ]


@pytest.mark.parametrize(
    ("text", "ms"), [("5m", 300_000), ("1h30m", 5_400_000), ("500ms", 500), ("2d", 172_800_000)]
)
def test_parse_duration(text: str, ms: int) -> None:
    assert rules.parse_duration(text) == ms


@pytest.mark.parametrize("text", ["", "5", "m5", "5 m", "1.5h", "5x"])
def test_parse_duration_refuses_what_prometheus_refuses(text: str) -> None:
    with pytest.raises(ConfigError):
        rules.parse_duration(text)


def test_for_scale_must_be_positive() -> None:
    with pytest.raises(ConfigError):
        rules.render_rules(for_scale=0)


def test_cli_prints_one_rule_file_that_promtool_and_vmalert_load(
    promtool: str, vmalert: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tenant_metrics", "sd", "prometheus-rules"],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    printed = tmp_path / "rules.yml"
    printed.write_text(done.stdout)
    assert yaml.safe_load(done.stdout) == {"groups": rules.groups()}
    check = _run(promtool, "check", "rules", str(printed))
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"{len(_alerts()) + len(_records())} rules found" in check.stdout
    vm = _run(vmalert, "-dryRun", f"-rule={printed}", "-loggerLevel=ERROR")
    assert vm.returncode == 0, vm.stdout + vm.stderr


def test_exporter_knobs_pin_values_and_default_is_unchanged() -> None:
    identity = exporter.NodeIdentity(service="svc", node="svc-1")
    default = exporter.render_metrics(identity, 42.0, 3)
    assert exporter.render_metrics(identity, 42.0, 3, None, exporter.Knobs()) == default
    assert 'opensearch_cluster_health_status_code{' in default
    pinned = exporter.render_metrics(
        identity,
        42.0,
        3,
        None,
        exporter.Knobs(
            status_code=3,
            number_of_nodes=2,
            unassigned_shards=5,
            heap_used_percent=91,
            disk_used_percent=96,
            disk_free_bytes_per_second=-1e6,
        ),
    )
    values = {
        line.split("{", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in pinned.splitlines()
        if not line.startswith("#")
    }
    assert values["opensearch_cluster_health_status_code"] == 3
    assert values["opensearch_cluster_health_number_of_nodes"] == 2
    assert values["opensearch_cluster_health_unassigned_shards"] == 5
    assert values["opensearch_jvm_mem_heap_used_percent"] == 91
    assert values["disk_used_percent"] == 96
    assert values["disk_free"] == 60e9 - 1e6 * 42.0
