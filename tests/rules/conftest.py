"""Fixtures for the rule tests: the real promtool and vmalert (missing is a failure, never a skip)
and the sd harness (fake Aiven and Cloud Controller) the CLI and end-to-end tests use."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.sd.conftest import fake_aiven, fake_cc, sqlite_harness  # noqa: F401  (fixtures)


def _binary(name: str, package: str) -> str:
    path = shutil.which(name) or f"/usr/bin/{name}"
    if not Path(path).exists():
        pytest.fail(f"{name} not found: install Debian's '{package}' package (make deps)")
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return _binary("promtool", "prometheus")


@pytest.fixture(scope="session")
def vmalert() -> str:
    return _binary("vmalert", "victoria-metrics")
