"""A small world for the tenant-experience tests: Aiven-like nodes, a real Prometheus, tenants.

Two tenants own Aiven services whose nodes speak like Aiven's Telegraf exporter
(``fakes.exporter.render_metrics``). Prometheus scrapes them through a file_sd file with
the target labels sd writes (DESIGN.md), and tenants get credentials as rows made with
``tenant_metrics.core.models`` and ``tenant_metrics.core.credentials``, exactly what the broker stores.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tenant_metrics.core import credentials, db
from tenant_metrics.core.models import Binding, ServiceInstance
from tenant_metrics.fakes.exporter import CONTENT_TYPE, NodeIdentity, render_metrics
from tests.support import free_port, wait_http

CREDENTIALS_KEY = credentials.derive_key("tests-ui-credentials-key-material")


@dataclass(slots=True)
class Node:
    """One Aiven-like node serving /metrics on loopback (no auth: the scrape side is not under test)."""

    identity: NodeIdentity
    server: ThreadingHTTPServer
    thread: threading.Thread

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_node(identity: NodeIdentity) -> Node:
    started = time.monotonic()
    scrapes = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
            return

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            scrapes[0] += 1
            body = (render_metrics(identity, time.monotonic() - started, scrapes[0])).encode()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return Node(identity, server, thread)


@dataclass(frozen=True, slots=True)
class Service:
    """A tenant's Aiven service as sd would label it."""

    instance_name: str
    service_type: str
    org_guid: str
    org_name: str
    space_guid: str
    space_name: str
    nodes: int = 1
    down_nodes: int = 0  # targets whose node does not answer (health "down")
    instance_guid: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def aiven_name(self) -> str:
        return f"prod-{self.instance_guid}"

    def labels(self) -> dict[str, str]:
        return {
            "cf_organization_guid": self.org_guid,
            "cf_space_guid": self.space_guid,
            "cf_service_instance_guid": self.instance_guid,
            "cf_organization_name": self.org_name,
            "cf_space_name": self.space_name,
            "cf_service_instance_name": self.instance_name,
            "aiven_service_name": self.aiven_name,
            "aiven_service_type": self.service_type,
            "aiven_plan": "business-4",
            "aiven_cloud": "aws-eu-west-2",
        }


ORG_A, ORG_B = "0a000000-0000-4000-8000-00000000000a", "0b000000-0000-4000-8000-00000000000b"
SPACE_A1, SPACE_A2 = "5a100000-0000-4000-8000-0000000000a1", "5a200000-0000-4000-8000-0000000000a2"
SPACE_B1, SPACE_B2 = "5b100000-0000-4000-8000-0000000000b1", "5b200000-0000-4000-8000-0000000000b2"

XSS_NAME = "<img src=x onerror=window.tmXss=1>"

# Tenant A holds a *space* plan in space-a1; tenant B an *org* plan for org-b.
SERVICES = (
    Service("search-a", "opensearch", ORG_A, "org-a", SPACE_A1, "space-a1", nodes=2),
    Service("legacy-a", "elasticsearch", ORG_A, "org-a", SPACE_A1, "space-a1"),
    Service("search-a2", "opensearch", ORG_A, "org-a", SPACE_A2, "space-a2"),  # same org, other space
    Service("search-b", "opensearch", ORG_B, "org-b", SPACE_B1, "space-b1", nodes=2),
    Service("logs-b", "opensearch", ORG_B, "org-b", SPACE_B2, "space-b2", nodes=1, down_nodes=1),
    # Names are tenant input: markup in one must reach the page as text, never as markup.
    Service(XSS_NAME, "opensearch", ORG_B, "org-b", SPACE_B2, "space-b2"),
)


def visible(scope: str, value: str) -> list[Service]:
    """The services a tenant of ``scope`` ("space"/"org") with guid ``value`` may see."""
    key = "space_guid" if scope == "space" else "org_guid"
    return [s for s in SERVICES if getattr(s, key) == value]


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    binding_id: str = ""


def add_tenant(database_url: str, *, scope: str, org_guid: str, space_guid: str, name: str) -> Credentials:
    """A provisioned metrics instance and one service key, stored as the broker stores them."""
    engine = db.make_engine(database_url)
    factory = db.make_session_factory(engine)
    issued = credentials.issue(CREDENTIALS_KEY)
    instance_id, binding_id = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        with db.session_scope(factory, write=True) as session:
            session.add(ServiceInstance(
                id=instance_id, service_id="tenant-metrics", plan_id=f"plan-{scope}", scope=scope,
                organization_guid=org_guid, space_guid=space_guid, organization_name=None,
                space_name=None, instance_name=name, parameters={}, request_fingerprint="test"))
            session.flush()
            session.add(Binding(
                id=binding_id, instance_id=instance_id, service_id="tenant-metrics", plan_id=f"plan-{scope}",
                app_guid=None, kind="key", username=issued.username, secret_nonce=issued.secret_nonce,
                password_sha256=issued.password_sha256, request_fingerprint="test"))
    finally:
        engine.dispose()
    return Credentials(issued.username, issued.password, binding_id)


def revoke(database_url: str, binding_id: str) -> None:
    """What ``cf delete-service-key`` ends in: the binding row is gone."""
    engine = db.make_engine(database_url)
    factory = db.make_session_factory(engine)
    try:
        with db.session_scope(factory, write=True) as session:
            session.delete(session.get(Binding, binding_id))
    finally:
        engine.dispose()


@dataclass(slots=True)
class World:
    prometheus_url: str
    nodes: list[Node]
    started: float = field(default_factory=time.monotonic)

    def wait_for_data(self, seconds: float) -> None:
        """Sleep until Prometheus holds at least ``seconds`` of scrapes."""
        time.sleep(max(0.0, self.started + seconds - time.monotonic()))


@contextmanager
def running_world(prometheus_binary: str, workdir: Path, extra_flags: tuple[str, ...] = ()) -> Iterator[World]:
    """Start every node and a Prometheus (1 s scrapes) that scrapes them; stop all after."""
    nodes: list[Node] = []
    groups = []
    proc = None
    try:
        for svc in SERVICES:
            addresses = []
            for i in range(1, svc.nodes + 1):
                node = start_node(NodeIdentity(service=svc.aiven_name, node=f"{svc.aiven_name}-{i}",
                                               service_type=svc.service_type))
                nodes.append(node)
                addresses.append(node.address)
            for _ in range(svc.down_nodes):
                addresses.append(f"127.0.0.1:{free_port()}")  # nothing listens: scrape fails
            groups.append({"targets": addresses, "labels": svc.labels()})
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "targets.json").write_text(json.dumps(groups))
        (workdir / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "- job_name: aiven\n"
            f"  file_sd_configs: [{{files: ['{workdir / 'targets.json'}'], refresh_interval: 1s}}]\n"
        )
        port = free_port()
        log = (workdir / "prometheus.log").open("wb")
        proc = subprocess.Popen(
            [prometheus_binary, f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
             *extra_flags],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/-/ready", timeout=30)
        world = World(url, nodes, started=time.monotonic())
        wait_until(lambda: _all_scraped(url), timeout=30, what="every target scraped twice")
        yield world
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for node in nodes:
            node.stop()


def _all_scraped(url: str) -> bool:
    import requests

    # Two samples of a counter per live node: rate() has something to work with.
    resp = requests.get(f"{url}/api/v1/query", params={"query": "count_over_time(system_uptime[1m]) >= 3"}, timeout=5)
    live = sum(s.nodes for s in SERVICES)
    return resp.ok and len(resp.json()["data"]["result"]) == live


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - still starting; the timeout reports it
            pass
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")
