"""`tenant-metrics --version` names the release the wheel is built as."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import tenant_metrics

ROOT = Path(__file__).resolve().parents[2]


def test_version_flag_prints_the_package_version() -> None:
    done = subprocess.run([sys.executable, "-m", "tenant_metrics", "--version"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout.strip() == f"tenant-metrics {tenant_metrics.__version__}"


def test_pyproject_takes_the_version_from_the_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "tenant_metrics.__version__"}
