"""`tenant-metrics demo`: the whole system on one machine, with fakes for what is remote.

It migrates a SQLite database, starts a fake Aiven API and a fake Cloud Controller (in
this process), Aiven-like exporters on loopback addresses, then sd, Prometheus (when the
binary is installed), the broker and the gateway as child processes, exactly as an
operator runs them. Two example tenants are provisioned and bound through the broker's
real OSB API. It prints what to try and runs until Ctrl-C, then stops every child.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import requests
import yaml

from tenant_metrics.core import db
from tenant_metrics.core.errors import TenantMetricsError
from tenant_metrics.fakes import exporter
from tenant_metrics.fakes.aiven import FakeAiven
from tenant_metrics.fakes.cloudcontroller import FakeCloudController

AIVEN_TOKEN = "demo-aiven-token"
AIVEN_PROJECT = "tenant-metrics-demo"
ENDPOINT_ID = "demo-prometheus-endpoint"
SCRAPE_USER, SCRAPE_PASSWORD = "prom-scraper", "demo-scrape-password"
PREFIX = "demo"
CF_CLIENT, CF_SECRET = "tenant-metrics-sd", "demo-cf-client-secret"
BROKER_USER, BROKER_PASSWORD = "cloud-controller", "demo-only-osb-secret-do-not-reuse-42"
NODE_ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


class DemoError(TenantMetricsError):
    pass


@dataclass(frozen=True, slots=True)
class Tenant:
    """One example tenant: its org and space, its Aiven service and its metrics instance."""

    label: str
    org_guid: str
    org_name: str
    space_guid: str
    space_name: str
    plan: str
    aiven_instance_guid: str
    aiven_instance_name: str
    metrics_instance_guid: str
    nodes: tuple[str, ...]
    service_type: str = "opensearch"

    @property
    def aiven_name(self) -> str:
        return f"{PREFIX}-{self.aiven_instance_guid}"


TENANTS = (
    Tenant("tenant-a", "0a000000-0000-4000-8000-00000000000a", "dept-of-examples",
           "5a000000-0000-4000-8000-00000000000a", "production", "space",
           "1a000000-0000-4000-8000-00000000000a", "orders-search",
           "9a000000-0000-4000-8000-00000000000a", NODE_ADDRESSES[0:2]),
    Tenant("tenant-b", "0b000000-0000-4000-8000-00000000000b", "agency-of-samples",
           "5b000000-0000-4000-8000-00000000000b", "staging", "org",
           "1b000000-0000-4000-8000-00000000000b", "logs",
           "9b000000-0000-4000-8000-00000000000b", NODE_ADDRESSES[2:3], "elasticsearch"),
)


@dataclass
class Ports:
    broker: int
    gateway: int
    sd: int
    prometheus: int
    scrape: int


@dataclass
class Demo:
    workdir: Path
    out: TextIO = field(default=sys.stdout)
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def say(self, message: str) -> None:
        print(message, file=self.out, flush=True)


def _free_port(addresses: tuple[str, ...] = ("127.0.0.1",)) -> int:
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        try:
            for addr in addresses:
                with socket.socket() as s:
                    s.bind((addr, port))
        except OSError:
            continue
        return port
    raise DemoError("no free port on the loopback addresses")


def _wait(check: Callable[[], bool], what: str, timeout: float, demo: Demo) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in demo.children:
            if proc.poll() is not None:
                raise DemoError(f"{name} exited with status {proc.returncode} while waiting for {what}; "
                                f"see {demo.workdir / (name + '.log')}")
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}")


def _http_ok(url: str, **kwargs: Any) -> Callable[[], bool]:
    return lambda: requests.get(url, timeout=2, **kwargs).ok


def _spawn(demo: Demo, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = open(demo.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=demo.workdir,
                            start_new_session=True)
    log.close()
    demo.children.append((name, proc))
    return proc


def _stop_children(demo: Demo) -> None:
    """SIGTERM every child's process group (gunicorn has workers), then SIGKILL stragglers."""
    for _name, proc in reversed(demo.children):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 15
    for _name, proc in reversed(demo.children):
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # any leftover in the group, e.g. a worker
        except (ProcessLookupError, PermissionError):
            pass
        if proc.poll() is None:
            proc.wait(timeout=5)
    demo.children.clear()


@contextmanager
def _fakes(demo: Demo, scrape_port: int) -> Iterator[tuple[FakeAiven, FakeCloudController, dict[str, list[str]]]]:
    """Fake Aiven + Cloud Controller with both tenants' services, and their exporters."""
    with ExitStack() as stack:
        aiven = FakeAiven(project=AIVEN_PROJECT, token=AIVEN_TOKEN)
        stack.enter_context(aiven)
        cc = FakeCloudController(CF_CLIENT, CF_SECRET)
        stack.enter_context(cc)
        cert, key = exporter.self_signed_cert(demo.workdir / "tls", "aivencloud.demo")
        aiven.ca_certificate = Path(cert).read_text()
        aiven.add_endpoint(ENDPOINT_ID, "platform-prometheus", SCRAPE_USER, SCRAPE_PASSWORD)
        dns: dict[str, list[str]] = {}
        for t in TENANTS:
            cc.add_owner(t.aiven_instance_guid, t.aiven_instance_name, t.space_guid, t.space_name,
                         t.org_guid, t.org_name)
            aiven.add_service(t.aiven_name, t.service_type, node_count=len(t.nodes),
                              tags={"organization_id": t.org_guid, "space_id": t.space_guid})
            dns[aiven.host_of(t.aiven_name)] = list(t.nodes)
            for i, addr in enumerate(t.nodes, start=1):
                node = exporter.start(addr, scrape_port, service=t.aiven_name, node=f"{t.aiven_name}-{i}",
                                      project=AIVEN_PROJECT, service_type=t.service_type,
                                      username=SCRAPE_USER, password=SCRAPE_PASSWORD, tls=(cert, key))
                stack.callback(node.stop)
        yield aiven, cc, dns


def _osb(base: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    resp = requests.request(method, base + path, json=body, auth=(BROKER_USER, BROKER_PASSWORD), timeout=30,
                            headers={"X-Broker-API-Version": "2.17",
                                     "X-Broker-API-Originating-Identity":
                                     "cloudfoundry eyJ1c2VyX2lkIjogImRlbW8tdXNlciJ9"})
    if resp.status_code not in (200, 201):
        raise DemoError(f"broker {method} {path} answered {resp.status_code}: {resp.text[:300]}")
    return dict(resp.json())


def _provision_and_bind(broker_url: str) -> dict[str, dict[str, Any]]:
    catalog = _osb(broker_url, "GET", "/v2/catalog")
    service = catalog["services"][0]
    plans = {p["name"]: p["id"] for p in service["plans"]}
    creds: dict[str, dict[str, Any]] = {}
    for t in TENANTS:
        context = {"platform": "cloudfoundry", "organization_guid": t.org_guid, "organization_name": t.org_name,
                   "space_guid": t.space_guid, "space_name": t.space_name, "instance_name": f"{t.label}-metrics"}
        _osb(broker_url, "PUT", f"/v2/service_instances/{t.metrics_instance_guid}",
             {"service_id": service["id"], "plan_id": plans[t.plan], "organization_guid": t.org_guid,
              "space_guid": t.space_guid, "context": context})
        binding = _osb(broker_url, "PUT",
                       f"/v2/service_instances/{t.metrics_instance_guid}/service_bindings/{t.label}-key",
                       {"service_id": service["id"], "plan_id": plans[t.plan], "bind_resource": {},
                        "context": {k: v for k, v in context.items() if k != "instance_name"}})
        creds[t.label] = binding["credentials"]
    return creds


def _prometheus(demo: Demo, env: dict[str, str], ports: Ports) -> str | None:
    binary = shutil.which("prometheus")
    if binary is None:
        demo.say("  Prometheus: not installed (apt-get install prometheus); the gateway will answer 503")
        return None
    printed = subprocess.run([sys.executable, "-m", "tenant_metrics", "sd", "prometheus-config"], check=False, env=env,
                             cwd=demo.workdir, capture_output=True, text=True, timeout=60)
    if printed.returncode != 0:
        raise DemoError(f"sd prometheus-config failed: {printed.stderr.strip()[-500:]}")
    job = yaml.safe_load(printed.stdout)["scrape_configs"][0]
    job.update(scrape_interval="5s", scrape_timeout="4s")
    job["file_sd_configs"][0]["refresh_interval"] = "5s"
    config = demo.workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "5s"}, "scrape_configs": [job]}))
    url = f"http://127.0.0.1:{ports.prometheus}"
    _spawn(demo, "prometheus", [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{ports.prometheus}",
                                f"--storage.tsdb.path={demo.workdir / 'tsdb'}", "--log.level=warn"], env)
    _wait(_http_ok(url + "/-/ready"), "Prometheus to be ready", 60, demo)
    return url


def run(workdir: Path, out: TextIO = sys.stdout, ready_file: Path | None = None,
        stop: threading.Event | None = None) -> int:
    """Start everything, print what to try, wait for ``stop`` (or SIGINT/SIGTERM), tear down."""
    workdir = workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    demo = Demo(workdir, out)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    ports = Ports(_free_port(), _free_port(), _free_port(), _free_port(), _free_port(NODE_ADDRESSES))
    database = f"sqlite:///{workdir / 'demo.sqlite3'}"
    demo.say(f"[1/6] migrating the demo database ({database})")
    db.upgrade(database)
    try:
        with _fakes(demo, ports.scrape) as (aiven, cc, dns):
            demo.say(f"[2/6] fake Aiven at {aiven.url}, fake Cloud Controller at {cc.url}, "
                     f"{sum(len(t.nodes) for t in TENANTS)} Aiven-like exporters on port {ports.scrape}")
            (workdir / "dns.json").write_text(json.dumps(dns))
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AIVEN_", "CF_", "SD_", "BROKER_"))}
            env.update(DATABASE_URL=database, PYTHONUNBUFFERED="1",
                       AIVEN_API_URL=aiven.url, AIVEN_API_TOKEN=AIVEN_TOKEN, AIVEN_PROJECT=AIVEN_PROJECT,
                       AIVEN_PROMETHEUS_ENDPOINT_ID=ENDPOINT_ID, AIVEN_SERVICE_PREFIX=PREFIX,
                       SD_TARGETS_FILE=str(workdir / "targets.json"), SD_INTERVAL_SECONDS="5",
                       SD_SCRAPE_PORT=str(ports.scrape), SD_LISTEN_PORT=str(ports.sd),
                       SD_DNS_OVERRIDES_FILE=str(workdir / "dns.json"),
                       CF_API_URL=cc.url, CF_CLIENT_ID=CF_CLIENT, CF_CLIENT_SECRET=CF_SECRET)
            cli = [sys.executable, "-m", "tenant_metrics"]
            demo.say("[3/6] starting sd (integrates the Aiven services, writes targets.json)")
            _spawn(demo, "sd", cli + ["sd", "run"], env)
            _wait(lambda: (workdir / "targets.json").exists(), "sd's first targets file", 60, demo)
            demo.say("[4/6] starting Prometheus")
            prometheus_url = _prometheus(demo, env, ports)
            demo.say("[5/6] starting the broker and the gateway (gunicorn)")
            broker_url = f"http://127.0.0.1:{ports.broker}"
            gateway_url = f"http://127.0.0.1:{ports.gateway}"
            _spawn(demo, "broker", cli + ["broker", "--workers", "2"],
                   {**env, "PORT": str(ports.broker), "BROKER_USERNAME": BROKER_USER,
                    "BROKER_PASSWORD": BROKER_PASSWORD, "GATEWAY_PUBLIC_URL": gateway_url})
            _spawn(demo, "gateway", cli + ["gateway", "--workers", "2"],
                   {**env, "PORT": str(ports.gateway), "GATEWAY_BIND_HOST": "127.0.0.1",
                    "PROMETHEUS_URLS": prometheus_url or "http://127.0.0.1:9"})
            _wait(_http_ok(broker_url + "/healthz"), "the broker", 60, demo)
            _wait(_http_ok(gateway_url + "/healthz"), "the gateway", 60, demo)
            demo.say("[6/6] provisioning and binding two tenants through the broker's OSB API")
            creds = _provision_and_bind(broker_url)
            if prometheus_url:
                for t in TENANTS:  # every tenant's services scraped at least once
                    cred = creds[t.label]
                    _wait(lambda cred=cred: bool(  # type: ignore[misc]
                        requests.get(gateway_url + "/api/v1/query", params={"query": "up == 1"},
                                     auth=(cred["username"], cred["password"]), timeout=5)
                        .json().get("data", {}).get("result")),
                        f"{t.label}'s first scrape to reach the gateway", 90, demo)
            _print_guide(demo, broker_url, gateway_url, prometheus_url, creds)
            if ready_file is not None:
                ready_file.write_text(json.dumps({"gateway": gateway_url, "broker": broker_url,
                                                  "prometheus": prometheus_url, "credentials": creds}))
            while not stop.wait(0.5):
                for name, proc in demo.children:
                    if proc.poll() is not None:
                        raise DemoError(f"{name} stopped unexpectedly (status {proc.returncode}); "
                                        f"see {workdir / (name + '.log')}")
            demo.say("stopping...")
    finally:
        _stop_children(demo)
    demo.say("stopped; logs and data are in " + str(workdir))
    return 0


def _print_guide(demo: Demo, broker: str, gateway: str, prometheus: str | None,
                 creds: dict[str, dict[str, Any]]) -> None:
    a, b = (creds[t.label] for t in TENANTS)
    lines = [
        "",
        "tenant-metrics demo is running. Press Ctrl-C to stop.",
        f"  broker      {broker}   (OSB; basic auth {BROKER_USER} / see demo/runner.py)",
        f"  gateway     {gateway}   (the tenants' Prometheus API)",
        f"  prometheus  {prometheus or '(not running)'}   (the platform's own, unfiltered)",
        "",
        f"tenant A (plan 'space', org {TENANTS[0].org_name}, space {TENANTS[0].space_name}):",
        f"  username {a['username']}",
        f"  password {a['password']}",
        f"tenant B (plan 'org', org {TENANTS[1].org_name}):",
        f"  username {b['username']}",
        f"  password {b['password']}",
        "",
        "Try:",
        f"  curl -s -u '{a['username']}:{a['password']}' '{gateway}/api/v1/query?query=up' | python3 -m json.tool",
        f"  curl -s -u '{b['username']}:{b['password']}' '{gateway}/api/v1/label/cf_service_instance_name/values'",
        f"  promtool query instant '{a['uri']}' 'avg by (cf_service_instance_name) (cpu_usage_idle)'",
        f"  open {gateway}/ui/ in a browser and sign in with tenant A's or B's credentials",
        "",
    ]
    demo.say("\n".join(lines))
