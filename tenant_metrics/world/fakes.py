"""The fakes of what is remote, started for a world: Aiven-like exporters, fake Aiven and Cloud Controller."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenant_metrics.fakes import exporter
from tenant_metrics.fakes.aiven import FakeAiven
from tenant_metrics.fakes.cloudcontroller import FakeCloudController


def address(node: exporter.RunningExporter) -> str:
    """host:port, as a scrape target."""
    return f"{node.host}:{node.port}"


@contextmanager
def running_exporters(layout: Mapping[str, Sequence[str]], port: int = 0, *,
                      per_service: Mapping[str, Mapping[str, Any]] | None = None,
                      **common: Any) -> Iterator[list[exporter.RunningExporter]]:
    """One exporter per node: ``layout`` maps an Aiven service name to its nodes' addresses
    (node ``i`` is named ``<service>-<i>``); ``common``, then ``per_service[service]``, are
    passed to ``exporter.start``. Yields them in layout order and stops them all on exit."""
    with ExitStack() as stack:
        nodes = []
        for service, addresses in layout.items():
            for i, host in enumerate(addresses, start=1):
                options = {**common, **(per_service or {}).get(service, {})}
                node = exporter.start(host, port, service=service, node=f"{service}-{i}", **options)
                stack.callback(node.stop)
                nodes.append(node)
        yield nodes


@dataclass(frozen=True, slots=True)
class FakeApis:
    """Fake Aiven (with a Prometheus endpoint and a CA) and a fake Cloud Controller, serving."""

    aiven: FakeAiven
    cc: FakeCloudController
    cert: str  # a self-signed certificate and key for exporters, the CA Aiven hands out
    key: str


@contextmanager
def running_fake_apis(tls_dir: Path, *, project: str, token: str, endpoint_id: str, scrape_user: str,
                      scrape_password: str, cc_client: str = "tenant-metrics-sd",
                      cc_secret: str = "sd-secret") -> Iterator[FakeApis]:
    cert, key = exporter.self_signed_cert(tls_dir, "aivencloud.test")
    with FakeAiven(project=project, token=token) as aiven, FakeCloudController(cc_client, cc_secret) as cc:
        aiven.ca_certificate = Path(cert).read_text()
        aiven.add_endpoint(endpoint_id, "platform-prometheus", scrape_user, scrape_password)
        yield FakeApis(aiven, cc, cert, key)
