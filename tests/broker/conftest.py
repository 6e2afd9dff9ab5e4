"""Broker fixtures: settings over each database, the app on a real loopback WSGI server, an OSB client."""

from __future__ import annotations

import base64
import io
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry

from broker.app import create_app
from broker.config import BrokerSettings, from_env
from tenant_metrics.core.jsonlog import JsonFormatter
from tenant_metrics.world import serve_wsgi

USERNAME = "cloud-controller"
PASSWORD = "correct-horse-battery-staple-42"
API_VERSION = "2.17"


def broker_env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        "BROKER_USERNAME": USERNAME,
        "BROKER_PASSWORD": PASSWORD,
        "DATABASE_URL": database_url,
        "GATEWAY_PUBLIC_URL": "https://metrics.example.org",
        **extra,
    }


def identity_header(user_id: str, platform: str = "cloudfoundry") -> str:
    return f"{platform} " + base64.b64encode(json.dumps({"user_id": user_id}).encode()).decode()


@dataclass
class Osb:
    """A small OSB client speaking to the broker over real HTTP, the way Cloud Controller does."""

    base: str
    settings: BrokerSettings
    session: requests.Session = field(default_factory=requests.Session)
    auth: tuple[str, str] | None = (USERNAME, PASSWORD)
    version: str | None = API_VERSION

    @property
    def service_id(self) -> str:
        return self.settings.catalog.service_id

    @property
    def space_plan(self) -> str:
        return self.settings.catalog.space_plan_id

    @property
    def org_plan(self) -> str:
        return self.settings.catalog.org_plan_id

    def headers(self, **extra: str) -> dict[str, str]:
        h = {"X-Broker-API-Request-Identity": str(uuid.uuid4())}
        if self.version is not None:
            h["X-Broker-API-Version"] = self.version
        h.update(extra)
        return h

    def request(self, method: str, path: str, *, headers: dict[str, str] | None = None, **kw: Any) -> requests.Response:
        return self.session.request(
            method, self.base + path, auth=self.auth, headers=headers or self.headers(), timeout=30, **kw
        )

    def provision_body(self, plan: str | None = None, org: str = "org-1", space: str = "space-1", **extra: Any) -> dict[str, Any]:
        return {
            "service_id": self.service_id,
            "plan_id": plan or self.space_plan,
            "organization_guid": org,
            "space_guid": space,
            "context": {
                "platform": "cloudfoundry",
                "organization_guid": org,
                "organization_name": "an-org",
                "space_guid": space,
                "space_name": "a-space",
                "instance_name": "my-metrics",
            },
            **extra,
        }

    def provision(self, iid: str, body: dict[str, Any] | None = None, **kw: Any) -> requests.Response:
        return self.request("PUT", f"/v2/service_instances/{iid}?accepts_incomplete=true", json=body or self.provision_body(), **kw)

    def update(self, iid: str, body: dict[str, Any], **kw: Any) -> requests.Response:
        return self.request("PATCH", f"/v2/service_instances/{iid}", json=body, **kw)

    def deprovision(self, iid: str, plan: str | None = None, **kw: Any) -> requests.Response:
        return self.request(
            "DELETE", f"/v2/service_instances/{iid}",
            params={"service_id": self.service_id, "plan_id": plan or self.space_plan}, **kw,
        )

    def bind_body(self, app_guid: str | None = "app-1", plan: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "service_id": self.service_id,
            "plan_id": plan or self.space_plan,
            "context": {"platform": "cloudfoundry", "organization_guid": "org-1", "space_guid": "space-1"},
        }
        if app_guid:
            body["app_guid"] = app_guid
            body["bind_resource"] = {"app_guid": app_guid, "space_guid": "space-1"}
        else:
            body["bind_resource"] = {}
        return body

    def bind(self, iid: str, bid: str, body: dict[str, Any] | None = None, **kw: Any) -> requests.Response:
        return self.request("PUT", f"/v2/service_instances/{iid}/service_bindings/{bid}", json=body or self.bind_body(), **kw)

    def unbind(self, iid: str, bid: str, plan: str | None = None, **kw: Any) -> requests.Response:
        return self.request(
            "DELETE", f"/v2/service_instances/{iid}/service_bindings/{bid}",
            params={"service_id": self.service_id, "plan_id": plan or self.space_plan}, **kw,
        )


@pytest.fixture
def settings(database_url: str) -> BrokerSettings:
    return from_env(broker_env(database_url))


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def broker_url(settings: BrokerSettings, registry: CollectorRegistry) -> Iterator[str]:
    app = create_app(settings, registry=registry, configure_logging=False)
    with serve_wsgi(app) as url:
        yield url
    app.extensions["tenant_metrics_broker"].store.engine.dispose()


@pytest.fixture
def osb(broker_url: str, settings: BrokerSettings) -> Iterator[Osb]:
    client = Osb(broker_url, settings)
    yield client
    client.session.close()


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Every log record, from any logger, as the JSON lines production writes."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    # As verbose as it gets: openbrokerapi's request printer would log headers here.
    logging.getLogger("openbrokerapi").setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        logging.getLogger("openbrokerapi").setLevel(logging.NOTSET)
