"""The world our processes live in, for tests, benchmarks and the demo alike.

Above the parts (it may start any of them). By responsibility:

- ``ports``: free loopback ports; ``ready``: bounded waits (a check, HTTP, Prometheus series);
- ``processes``: children started in their own session with a log file, stopped by PID;
- ``threads``: a WSGI or aiohttp app served in a thread; ``interrupt``: run until Ctrl-C;
- ``prometheus``: a real Prometheus and its configs; ``parts``: broker/gateway/sd subprocesses;
- ``fakes``: exporters, fake Aiven and Cloud Controller;
- ``tenants``: rows as the broker writes them; ``osb``: tenants made through the broker's OSB API.
"""

from tenant_metrics.world.errors import NotReady, WorldError
from tenant_metrics.world.fakes import FakeApis, address, running_exporters, running_fake_apis
from tenant_metrics.world.interrupt import serve_until_interrupted
from tenant_metrics.world.osb import (
    Bound,
    bind,
    catalog_service,
    osb,
    provision,
    provision_and_bind,
)
from tenant_metrics.world.parts import ROOT, part_env, start_broker, start_gateway, start_part
from tenant_metrics.world.ports import free_port
from tenant_metrics.world.processes import Child, Children, children, spawn, spawn_ready
from tenant_metrics.world.prometheus import (
    Target,
    prometheus_binary,
    sd_config,
    start_prometheus,
    static_config,
)
from tenant_metrics.world.ready import wait_for_series, wait_http, wait_until
from tenant_metrics.world.tenants import KEY, TenantCreds, add_tenant, revoke
from tenant_metrics.world.threads import serve_app, serve_wsgi

__all__ = [
    "KEY", "ROOT", "Bound", "Child", "Children", "FakeApis", "NotReady", "Target", "TenantCreds", "WorldError",
    "add_tenant", "address", "bind", "catalog_service", "osb", "provision", "provision_and_bind", "children", "free_port", "part_env", "prometheus_binary", "revoke",
    "running_exporters", "running_fake_apis", "sd_config", "serve_app", "serve_until_interrupted",
    "serve_wsgi", "spawn", "spawn_ready", "start_broker", "start_gateway", "start_part", "start_prometheus",
    "static_config", "wait_for_series", "wait_http", "wait_until",
]
