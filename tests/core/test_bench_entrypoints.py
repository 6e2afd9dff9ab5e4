"""Every benchmark `make bench` runs exists and parses its own command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.run_all import BENCHES

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name, argv", BENCHES, ids=[b[0] for b in BENCHES])
def test_benchmark_accepts_its_arguments(name: str, argv: list[str]) -> None:
    out = subprocess.run([sys.executable, *argv, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout
