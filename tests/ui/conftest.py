"""Fixtures for the tenant-experience tests: one world per module, a real gateway per test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from gateway.app import create_app
from gateway.config import GatewaySettings
from tenant_metrics.world import serve_app
from tests.ui.world import (
    ORG_A,
    ORG_B,
    SPACE_A1,
    SPACE_B1,
    Credentials,
    World,
    add_tenant,
    running_world,
)

# Prometheus refuses queries that would hold more samples than this: a 1 s subquery over
# every series of a tenant is "too expensive"; the page's and dashboards' queries are not.
MAX_SAMPLES = 500


@pytest.fixture(scope="module")
def world(prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with running_world(prometheus_binary, tmp_path_factory.mktemp("world"),
                       extra_flags=(f"--query.max-samples={MAX_SAMPLES}",)) as w:
        yield w


@dataclass(frozen=True, slots=True)
class Tenants:
    a: Credentials  # space plan, space-a1 of org-a
    b: Credentials  # org plan, org-b


@pytest.fixture
def tenants(database_url: str) -> Tenants:
    return Tenants(
        a=add_tenant(database_url, scope="space", org_guid=ORG_A, space_guid=SPACE_A1, name="metrics-a"),
        b=add_tenant(database_url, scope="org", org_guid=ORG_B, space_guid=SPACE_B1, name="metrics-b"),
    )


@pytest.fixture
def gateway_url(database_url: str, world: World) -> Iterator[str]:
    """The real gateway app (create_app with settings) on loopback, in front of the world's Prometheus."""
    settings = GatewaySettings(
        prometheus_urls=(world.prometheus_url,),
        database_url=database_url,
        rate_limit_per_second=1000.0,
        rate_limit_burst=1000,
        auth_cache_seconds=0.0,
    )
    with serve_app(create_app(settings)) as url:
        yield url
