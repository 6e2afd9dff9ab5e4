"""The benchmark's ceiling: a bare openbrokerapi broker keeping state in a dict, no database.

Served by the same gunicorn settings as ours (``"bench.broker_ceiling:create_app()"``). Each
worker keeps its own dict, and a cycle's requests may land on different workers, so it
answers success for ids it has not seen: it measures openbrokerapi + Flask + gunicorn and
nothing else.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask
from openbrokerapi.api import get_blueprint
from openbrokerapi.auth import BrokerCredentials
from openbrokerapi.service_broker import (
    Binding,
    DeprovisionServiceSpec,
    ProvisionedServiceSpec,
    Service,
    ServiceBroker,
    UnbindSpec,
)

from broker.catalog import Catalog
from broker.config import CatalogSettings


class InMemoryBroker(ServiceBroker):
    def __init__(self) -> None:
        self.instances: dict[str, Any] = {}
        self.bindings: dict[str, Any] = {}
        self.service = Catalog.from_settings(CatalogSettings()).to_osb()

    def catalog(self) -> Service:
        return self.service

    def provision(self, instance_id: str, details: Any, async_allowed: bool, **_: Any) -> ProvisionedServiceSpec:
        self.instances[instance_id] = details
        return ProvisionedServiceSpec(dashboard_url="http://127.0.0.1:8090/ui/")

    def bind(self, instance_id: str, binding_id: str, details: Any, async_allowed: bool, **_: Any) -> Binding:
        self.bindings[binding_id] = instance_id
        return Binding(credentials={"username": "u-" + binding_id[:8], "password": os.urandom(16).hex()})

    def unbind(self, instance_id: str, binding_id: str, details: Any, async_allowed: bool, **_: Any) -> UnbindSpec:
        self.bindings.pop(binding_id, None)
        return UnbindSpec(is_async=False)

    def deprovision(self, instance_id: str, details: Any, async_allowed: bool, **_: Any) -> DeprovisionServiceSpec:
        self.instances.pop(instance_id, None)
        return DeprovisionServiceSpec(is_async=False)


def create_app() -> Flask:
    app = Flask("ceiling", static_folder=None)
    credentials = BrokerCredentials(os.environ["BROKER_USERNAME"], os.environ["BROKER_PASSWORD"])
    import logging

    app.register_blueprint(get_blueprint(InMemoryBroker(), credentials, logging.getLogger("ceiling")))
    return app
