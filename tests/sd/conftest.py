"""sd test harness: fake Aiven and Cloud Controller over real loopback HTTP, a real DB
(SQLite and PostgreSQL), and sd built by its own wiring with injected clocks and resolver."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from sd.app import SdApp, build
from sd.config import SdSettings
from sd.http import RetryPolicy
from tenant_metrics.fakes.aiven import FakeAiven
from tenant_metrics.fakes.cloudcontroller import FakeCloudController

PREFIX = "prod-es"
ENDPOINT = "7a1b2c3d-0000-4000-8000-00000000e0e0"
TOKEN = "aiven-test-token"


class Clock:
    """A settable UTC clock for DB timestamps (backoff, refresh) and a monotonic one for tokens."""

    def __init__(self) -> None:
        self.utc = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
        self.mono = 1000.0

    def now(self) -> datetime:
        return self.utc

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.utc += timedelta(seconds=seconds)
        self.mono += seconds


def fake_ips(host: str, count: int = 3) -> list[str]:
    digest = hashlib.sha256(host.encode()).digest()
    return [f"10.{digest[0]}.{digest[1]}.{i + 1}" for i in range(count)]


@dataclass
class Resolver:
    """The DNS seam: a table, else three stable fake addresses per host; ``fail`` hosts raise."""

    table: dict[str, list[str]] = field(default_factory=dict)
    fail: set[str] = field(default_factory=set)

    def __call__(self, host: str) -> list[str]:
        if host in self.fail:
            raise OSError(f"lookup {host} failed")
        return self.table.get(host) or fake_ips(host)


@dataclass
class Tenant:
    guid: str
    name: str
    org_guid: str
    space_guid: str

    @property
    def aiven_name(self) -> str:
        return f"{PREFIX}-{self.guid}"


class Harness:
    def __init__(
        self, database_url: str, aiven: FakeAiven, cc: FakeCloudController, tmp_path: Path
    ) -> None:
        self.database_url = database_url
        self.aiven = aiven
        self.cc = cc
        self.tmp_path = tmp_path
        self.targets_file = tmp_path / "targets" / "aiven.json"
        self.clock = Clock()
        self.resolver = Resolver()
        self.sleeps: list[float] = []
        self.apps: list[SdApp] = []
        self.env: dict[str, str] = {
            "AIVEN_API_URL": aiven.url,
            "AIVEN_API_TOKEN": TOKEN,
            "AIVEN_PROJECT": aiven.project,
            "AIVEN_PROMETHEUS_ENDPOINT_ID": ENDPOINT,
            "AIVEN_SERVICE_PREFIX": PREFIX,
            "SD_TARGETS_FILE": str(self.targets_file),
            "CF_API_URL": cc.url,
            "CF_CLIENT_ID": "tenant-metrics-sd",
            "CF_CLIENT_SECRET": "sd-secret",
            "DATABASE_URL": database_url,
            "SD_HTTP_TIMEOUT_SECONDS": "5",
        }

    def app(self, holder: str = "sd-a", **env: str) -> SdApp:
        settings = SdSettings.from_env({**self.env, **env})
        app = build(
            settings,
            registry=CollectorRegistry(),
            resolver=self.resolver,
            holder=holder,
            now=self.clock.now,
            monotonic=self.clock.monotonic,
            sleep=self.sleeps.append,
            retry=RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05),
            dns_workers=4,
        )
        self.apps.append(app)
        return app

    def tenant(
        self,
        *,
        name: str = "my-search",
        org: str = "dept-of-examples",
        space: str = "production",
        org_guid: str | None = None,
        space_guid: str | None = None,
        in_cc: bool = True,
        tags: bool = True,
        service_type: str = "opensearch",
        integrated: bool = False,
        **service: Any,
    ) -> Tenant:
        t = Tenant(
            str(uuid.uuid4()), name, org_guid or str(uuid.uuid4()), space_guid or str(uuid.uuid4())
        )
        if in_cc:
            self.cc.add_owner(t.guid, name, t.space_guid, space, t.org_guid, org)
        tag_map = (
            {
                "organization_id": t.org_guid,
                "space_id": t.space_guid,
                "service_id": t.guid,
                "deploy_env": "prod",
            }
            if tags
            else {}
        )
        self.aiven.add_service(t.aiven_name, service_type, tags=tag_map, **service)
        if integrated:
            self.aiven.add_integration(t.aiven_name, ENDPOINT)
        return t

    def targets(self) -> list[dict[str, Any]]:
        return json.loads(self.targets_file.read_text())

    def groups_by_service(self) -> dict[str, dict[str, Any]]:
        return {g["labels"]["aiven_service_name"]: g for g in self.targets()}

    def close(self) -> None:
        for app in self.apps:
            app.close()


@pytest.fixture
def fake_aiven() -> Iterator[FakeAiven]:
    fake = FakeAiven(project="tm-test", token=TOKEN)
    fake.add_endpoint(ENDPOINT, "platform-prometheus", "prom-scraper", "scrape-secret-123")
    fake.add_endpoint("0ther000-0000-4000-8000-000000000000", "someone-elses-prometheus")
    with fake:
        yield fake


@pytest.fixture
def fake_cc() -> Iterator[FakeCloudController]:
    with FakeCloudController(token_ttl=3600) as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def harness(
    database_url: str, fake_aiven: FakeAiven, fake_cc: FakeCloudController, tmp_path: Path
) -> Iterator[Harness]:
    h = Harness(database_url, fake_aiven, fake_cc, tmp_path)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def sqlite_harness(
    tmp_path: Path, fake_aiven: FakeAiven, fake_cc: FakeCloudController
) -> Iterator[Harness]:
    """For tests about the APIs, not the DB: SQLite only, to keep the suite fast."""
    from tenant_metrics.core import db

    url = f"sqlite:///{tmp_path / 'sd.sqlite3'}"
    db.upgrade(url)
    h = Harness(url, fake_aiven, fake_cc, tmp_path)
    try:
        yield h
    finally:
        h.close()
