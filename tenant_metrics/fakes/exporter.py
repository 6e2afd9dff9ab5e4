"""A loopback exporter that speaks like one node of an Aiven service with the prometheus integration.

Aiven serves Telegraf-generated metrics in the Prometheus text format on every node
(port 9273, path /metrics, HTTPS with the project CA, basic auth of the integration
endpoint; docs/external-apis.md §3). This server does the same on any loopback
address and port, so a real Prometheus can scrape it in tests, benchmarks and the demo::

    node = start("127.0.0.2", 0, service="prod-3f2c...", node="prod-3f2c...-1")
    node.url            # "http://127.0.0.2:PORT/metrics"
    node.scrapes        # how many authenticated scrapes it answered
    node.stop()

Values move over time (counters grow, gauges wander) so rate() and friends see data.
``tls=(certfile, keyfile)`` serves HTTPS (see ``self_signed_cert`` for a throwaway pair).
``node.knobs`` (a ``Knobs``) pins health values for alert tests, e.g. ``node.knobs.status_code = 3``
turns the cluster red from the next scrape on; every knob left at None keeps the default.
"""

from __future__ import annotations

import base64
import hmac
import math
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """Aiven's own tags on every series (cloud, host, project, service, service_type)."""

    service: str
    node: str
    project: str = "tenant-metrics-demo"
    cloud: str = "aws-eu-west-2"
    service_type: str = "opensearch"


@dataclass(slots=True)
class Knobs:
    """Values a test pins while the exporter serves; None keeps the default (moving) value.

    ``disk_free_bytes_per_second`` is the slope of ``disk_free`` (default -1e4: slowly filling).
    """

    status_code: float | None = None
    number_of_nodes: float | None = None
    unassigned_shards: float | None = None
    heap_used_percent: float | None = None
    disk_used_percent: float | None = None
    disk_free_bytes_per_second: float | None = None


def _pick(pinned: float | None, default: float) -> float:
    return default if pinned is None else pinned


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(base: dict[str, str], extra: dict[str, str] | None = None) -> str:
    merged = dict(base)
    if extra:
        merged.update(extra)
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(merged.items())) + "}"


def render_metrics(
    identity: NodeIdentity,
    elapsed: float,
    scrapes: int,
    extra_labels: dict[str, str] | None = None,
    knobs: Knobs | None = None,
) -> str:
    """The exposition body at ``elapsed`` seconds after start: pure, so tests can check it.

    ``extra_labels`` lets a test make the exporter emit labels of its own (for example a
    spoofed ``cf_organization_guid``, which Prometheus must rename with honor_labels false).
    ``knobs`` pins health values (see ``Knobs``); without it the body is the default one.
    """
    k = knobs or Knobs()
    tags = {
        "cloud": identity.cloud,
        "host": identity.node,
        "project": identity.project,
        "service": identity.service,
        "service_type": identity.service_type,
    }
    if extra_labels:
        tags.update(extra_labels)
    wave = math.sin(elapsed / 30.0)
    fam = "elasticsearch" if identity.service_type == "elasticsearch" else "opensearch"
    cluster = {"cluster_name": identity.service}
    node = {"cluster_name": identity.service, "node_name": identity.node}
    lines: list[tuple[str, str, dict[str, str] | None, float]] = [
        ("cpu_usage_idle", "gauge", {"cpu": "cpu-total"}, 80.0 + 10.0 * wave),
        ("cpu_usage_user", "gauge", {"cpu": "cpu-total"}, 12.0 - 6.0 * wave),
        ("cpu_usage_system", "gauge", {"cpu": "cpu-total"}, 4.0 + wave),
        (
            "disk_used_percent",
            "gauge",
            {"path": "/", "device": "nvme0n1p1", "fstype": "ext4"},
            _pick(k.disk_used_percent, 41.0 + 0.001 * elapsed),
        ),
        (
            "disk_free",
            "gauge",
            {"path": "/", "device": "nvme0n1p1", "fstype": "ext4"},
            60e9 + _pick(k.disk_free_bytes_per_second, -1e4) * elapsed,
        ),
        ("mem_available_percent", "gauge", None, 55.0 + 5.0 * wave),
        ("mem_used_percent", "gauge", None, 45.0 - 5.0 * wave),
        ("system_load1", "gauge", None, 0.5 + 0.4 * abs(wave)),
        ("system_load5", "gauge", None, 0.45 + 0.2 * abs(wave)),
        ("system_uptime", "counter", None, 86_400.0 + elapsed),
        ("net_bytes_recv", "counter", {"interface": "eth0"}, 1_000_000.0 + 4096.0 * elapsed),
        ("net_bytes_sent", "counter", {"interface": "eth0"}, 2_000_000.0 + 8192.0 * elapsed),
        ("diskio_reads", "counter", {"name": "nvme0n1"}, 10_000.0 + 7.0 * elapsed),
        ("diskio_writes", "counter", {"name": "nvme0n1"}, 20_000.0 + 11.0 * elapsed),
        # Telegraf drops the string field "status" and keeps "status_code": 1 green, 2 yellow, 3 red.
        (f"{fam}_cluster_health_status_code", "gauge", cluster, _pick(k.status_code, 1.0)),
        (
            f"{fam}_cluster_health_number_of_nodes",
            "gauge",
            cluster,
            _pick(k.number_of_nodes, 3.0),
        ),
        (f"{fam}_cluster_health_active_shards", "gauge", cluster, 30.0),
        (
            f"{fam}_cluster_health_unassigned_shards",
            "gauge",
            cluster,
            _pick(k.unassigned_shards, 0.0),
        ),
        (f"{fam}_clusterstats_indices_count", "gauge", cluster, 12.0),
        (f"{fam}_clusterstats_indices_docs_count", "gauge", cluster, 1_000_000.0 + 100.0 * elapsed),
        (f"{fam}_clusterstats_indices_store_size_in_bytes", "gauge", cluster, 5e9 + 1e5 * elapsed),
        (
            f"{fam}_jvm_mem_heap_used_percent",
            "gauge",
            node,
            _pick(k.heap_used_percent, 50.0 + 20.0 * wave),
        ),
        (f"{fam}_jvm_gc_collectors_young_collection_count", "counter", node, 100.0 + 0.5 * elapsed),
        (f"{fam}_indices_search_query_total", "counter", node, 5000.0 + 25.0 * elapsed + scrapes),
        (f"{fam}_indices_indexing_index_total", "counter", node, 8000.0 + 40.0 * elapsed),
        (f"{fam}_process_open_file_descriptors", "gauge", node, 900.0 + 10.0 * wave),
    ]
    out: list[str] = []
    for name, kind, extra, value in lines:
        out.append(f"# TYPE {name} {'untyped' if kind == 'gauge' else kind}")
        out.append(f"{name}{_labels(tags, extra)} {round(value, 3)!r}")
    return "\n".join(out) + "\n"


@dataclass(slots=True)
class RunningExporter:
    """A started exporter: ``url`` to scrape, ``stop()`` to shut it down."""

    url: str
    host: str
    port: int
    identity: NodeIdentity
    _server: ThreadingHTTPServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _counter: list[int] = field(repr=False)
    knobs: Knobs = field(default_factory=Knobs)

    @property
    def scrapes(self) -> int:
        return self._counter[0]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler(
    identity: NodeIdentity,
    username: str | None,
    password: str | None,
    clock: Callable[[], float],
    started: float,
    counter: list[int],
    extra_labels: dict[str, str] | None,
    knobs: Knobs | None = None,
) -> type[BaseHTTPRequestHandler]:
    expected = None
    if username is not None:
        expected = "Basic " + base64.b64encode(f"{username}:{password or ''}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return  # quiet: tests and the demo read our own logs, not the fake's

        def _send(
            self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")
                return
            given = self.headers.get("Authorization", "")
            if expected is not None and not hmac.compare_digest(given.encode(), expected.encode()):
                self._send(
                    401,
                    b"Unauthorized\n",
                    "text/plain; charset=utf-8",
                    {"WWW-Authenticate": 'Basic realm="Restricted"'},
                )
                return
            counter[0] += 1
            body = render_metrics(
                identity, clock() - started, counter[0], extra_labels, knobs
            ).encode()
            self._send(200, body, CONTENT_TYPE)

        do_HEAD = do_GET

    return Handler


def start(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    service: str = "demo-service",
    node: str | None = None,
    project: str = "tenant-metrics-demo",
    cloud: str = "aws-eu-west-2",
    service_type: str = "opensearch",
    username: str | None = "prometheus",
    password: str | None = "prometheus-password",
    tls: tuple[str, str] | None = None,
    extra_labels: dict[str, str] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> RunningExporter:
    """Serve one node's /metrics in a daemon thread. ``port=0`` picks a free port.

    ``username=None`` turns basic auth off. ``tls`` is ``(certfile, keyfile)``.
    """
    identity = NodeIdentity(
        service=service,
        node=node or f"{service}-1",
        project=project,
        cloud=cloud,
        service_type=service_type,
    )
    counter = [0]
    knobs = Knobs()
    handler = _handler(
        identity, username, password, clock, clock(), counter, extra_labels, knobs
    )
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    scheme = "http"
    if tls is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls[0], tls[1])
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    bound_port = int(server.server_address[1])
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"exporter-{host}:{bound_port}",
        daemon=True,
    )
    thread.start()
    return RunningExporter(
        url=f"{scheme}://{host}:{bound_port}/metrics",
        host=host,
        port=bound_port,
        identity=identity,
        _server=server,
        _thread=thread,
        _counter=counter,
        knobs=knobs,
    )


def self_signed_cert(directory: Path, common_name: str = "localhost") -> tuple[str, str]:
    """A throwaway certificate and key (openssl CLI) standing in for the Aiven project CA."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "exporter.crt", directory / "exporter.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={common_name}",
            "-addext",
            f"subjectAltName=DNS:{common_name},IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


def main() -> None:
    """``python -m tenant_metrics.fakes.exporter [HOST] [PORT]``: serve one node until interrupted."""
    import sys

    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 9273
    running = start(host, port)
    print(f"serving {running.url} (basic auth prometheus:prometheus-password)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        running.stop()


if __name__ == "__main__":
    main()
