"""`tenant-metrics sd prometheus-config` references the rules: real processes, fake Aiven."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tenant_metrics import rules
from tests.sd.conftest import Harness

ROOT = Path(__file__).resolve().parents[2]


def _config(h: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenant_metrics", "sd", "prometheus-config", *args],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "HOME": str(h.tmp_path), **h.env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_default_references_the_shipped_rules_and_promtool_loads_them(
    sqlite_harness: Harness, promtool: str
) -> None:
    h = sqlite_harness
    done = _config(h)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    assert config["rule_files"] == [rules.rules_glob()]
    assert config["scrape_configs"][0]["job_name"] == "aiven-tenant-services"
    path = h.tmp_path / "prometheus.yml"
    path.write_text(done.stdout)
    # Not --syntax-only: promtool reads the rule files the glob matches and checks them too.
    check = subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    for name in rules.RULE_FILES:
        assert name in check.stdout


def test_rules_path_file_directory_or_nothing(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    own = h.tmp_path / "rules" / "platform.yml"
    own.parent.mkdir()
    own.write_text(rules.render_rules())
    as_file = yaml.safe_load(_config(h, "--rules-path", str(own)).stdout)
    assert as_file["rule_files"] == [str(own)]
    as_dir = yaml.safe_load(_config(h, "--rules-path", str(own.parent)).stdout)
    assert as_dir["rule_files"] == [str(own.parent / "*.yml")]
    none = yaml.safe_load(_config(h, "--rules-path", "").stdout)
    assert "rule_files" not in none and none["scrape_configs"]


def test_a_rules_path_matching_nothing_is_a_clear_error_before_anything_is_written(
    sqlite_harness: Harness,
) -> None:
    h = sqlite_harness
    missing = h.tmp_path / "nowhere" / "*.yml"
    done = _config(h, "--rules-path", str(missing))
    assert done.returncode == 2
    assert done.stdout == ""
    assert f"--rules-path: no rule file matches {missing}" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (h.targets_file.parent / "aiven-prometheus-password").exists()
