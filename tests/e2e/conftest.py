"""The sd end-to-end world both sd e2e tests share: a migrated SQLite database, the fake
Aiven and Cloud Controller over TLS, and sd's test harness around them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tenant_metrics.core import db
from tenant_metrics.world import FakeApis, running_fake_apis
from tests.sd.conftest import ENDPOINT, Harness


@pytest.fixture
def sd_world(tmp_path: Path) -> Iterator[tuple[Harness, FakeApis]]:
    url = f"sqlite:///{tmp_path / 'sd.sqlite3'}"
    db.upgrade(url)
    with running_fake_apis(tmp_path / "tls", project="tm-e2e", token="aiven-test-token", endpoint_id=ENDPOINT,
                           scrape_user="prom-scraper", scrape_password="scrape-secret-123") as apis:
        h = Harness(url, apis.aiven, apis.cc, tmp_path)
        try:
            yield h, apis
        finally:
            h.close()


def query(base: str, promql: str) -> list[dict[str, Any]]:
    """An instant query against a Prometheus: the result list."""
    resp = requests.get(base + "/api/v1/query", params={"query": promql}, timeout=10)
    resp.raise_for_status()
    return list(resp.json()["data"]["result"])
