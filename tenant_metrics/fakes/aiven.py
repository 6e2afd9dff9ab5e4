"""A fake Aiven API (the parts sd uses), following the shapes in docs/external-apis.md (Aiven).

State lives in the object: services, integration endpoints, integrations created (with
who created them), so tests assert on outcomes, not on call sequences::

    fake = FakeAiven(project="proj", token="t").start()
    fake.add_endpoint("ep-1", "platform-prometheus", "scraper", "pw")
    fake.add_service("prod-<guid>", "opensearch", tags={"organization_id": ..., "space_id": ...})
    ...  AivenClient(fake.url, "t", "proj") ...
    fake.integrations_for("prod-<guid>")
    fake.stop()

Choices for the API's unverified ([?]) behaviours, each switchable:
- a duplicate create answers 409 "already exists" (``duplicates="conflict"``) or is
  accepted (``duplicates="accept"``, so sd's own exactly-once logic is what is tested);
- a create for a service that is not RUNNING, or on a hobbyist plan, answers 400;
- a bad token answers 403 ``{"message": "Invalid token", ...}``;
- 429 carries ``Retry-After`` only when the fault asks for it, and always the real message
  "... try again in Ns".
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tenant_metrics.fakes._http import FakeServer, Fault, Reply, Request

_PREFIX = "/v1/project/"
# A real (throwaway, key discarded) self-signed certificate, so configs that load it parse.
FAKE_CA = """-----BEGIN CERTIFICATE-----
MIIDPTCCAiWgAwIBAgIUWspcwrIPUoub3oaa4MJBkmplxc8wDQYJKoZIhvcNAQEL
BQAwLTErMCkGA1UEAwwiRmFrZSBBaXZlbiBQcm9qZWN0IENBICh0ZXN0cyBvbmx5
KTAgFw0yNjExMjMxMzAxMjhaGA8yMTI2MTAzMDEzMDEyOFowLTErMCkGA1UEAwwi
RmFrZSBBaXZlbiBQcm9qZWN0IENBICh0ZXN0cyBvbmx5KTCCASIwDQYJKoZIhvcN
AQEBBQADggEPADCCAQoCggEBAJ1Us5k3kOQBbWltrt3Fel+PUUI8OmkdSnPhzRrW
wRL26HZx7phNr/ETL9qJSveGS/36dBTJEackvO4g0RYseBjfkjs5zBjaM1n0UE5A
X4dHgMECoojmOj5jLDElfs1gePex3b1Zf7qtxdZnJ6XPZsTKPBiBneD5mfBBmSfY
8rajxhUMzHcTH0c3sWfmXIWa1UJO11vXwSPFprVKKN/deenBp9ZsGnHY5qgXYBP8
6zxHdyXjbsMrxqxH22KHJAk7m1ofnCkTqVzw73+uI33/SryqJeNHqgLlTPcm+lcN
dfhxQakGRyzhOX7bVidQO2LcsWoEJ5JP3xeVZnUMxuXE/WMCAwEAAaNTMFEwHQYD
VR0OBBYEFPD+asIl1m7tBQt/3j8hIyt66X2zMB8GA1UdIwQYMBaAFPD+asIl1m7t
BQt/3j8hIyt66X2zMA8GA1UdEwEB/wQFMAMBAf8wDQYJKoZIhvcNAQELBQADggEB
AEd6njVkW57+KV5S0EaturY6G64If0Hyca/FMzki/gu8OdprgLWRuS+oPAJUB1jk
f4hvYVvAqGzF3ax+KF1V5s/mULCPNlcXav5KTq9EBLtgKytmRkJ4vlYOqlJqxzcH
BBH0yqNqFcG2zOLyN/YYBFBOmT454NZlm9SdFWZsmaK/sPj+QzXxLrq9Xeu7VfQU
ZAbkeCGukpGijTRZ+XUdot6IeXW36ckQTVimUFv/nA1B4ZWeMqfgDgBnuZBRhx/p
cEHt4y28dlIO656CR6fUJdm/CjuytPuoUd+kQQRA03XiB+pCm6ryqO6XPz0SSnLP
vJ6Rl6hMfXokoZaHxj5n7Zc=
-----END CERTIFICATE-----
"""


def _error(status: int, message: str) -> Reply:
    return Reply.json(
        status, {"message": message, "errors": [{"message": message, "status": status}]}
    )


@dataclass(slots=True)
class _Service:
    name: str
    type: str
    state: str
    plan: str
    cloud: str
    node_count: int
    tags: dict[str, str]
    placeholders: list[dict[str, Any]]


class FakeAiven(FakeServer):
    def __init__(
        self,
        project: str = "tenant-metrics-demo",
        token: str = "aiven-token",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        duplicates: str = "conflict",
        content_type: str = "application/json",
    ) -> None:
        super().__init__(host, port)
        self.project = project
        self.tokens = {token}
        self.duplicates = duplicates
        self.content_type = content_type
        self.ca_certificate = FAKE_CA  # what /kms/ca answers; a test may put its exporters' CA here
        self.services: dict[str, _Service] = {}
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.integrations: dict[str, dict[str, Any]] = {}
        self.created_by: list[
            tuple[str, str]
        ] = []  # (service name, integration id) per accepted create
        self._list_cache: tuple[int, bytes] | None = None
        self._version = 0
        self._create_lock = threading.Lock()
        self._empty_lists = 0  # fault switch: listings still to answer wrongly empty (-1: all)

    # -- state helpers for tests ---------------------------------------------------------
    def _changed(self) -> None:
        self._version += 1

    def add_endpoint(
        self,
        endpoint_id: str,
        name: str = "platform-prometheus",
        username: str = "prom-scraper",
        password: str = "scrape-password",
        endpoint_type: str = "prometheus",
    ) -> None:
        with self.lock:
            self.endpoints[endpoint_id] = {
                "endpoint_id": endpoint_id,
                "endpoint_name": name,
                "endpoint_type": endpoint_type,
                "endpoint_config": {},
                "user_config": {"basic_auth_username": username, "basic_auth_password": password},
            }
            self._changed()

    def add_service(
        self,
        name: str,
        service_type: str = "opensearch",
        *,
        state: str = "RUNNING",
        plan: str = "business-4",
        cloud: str = "aws-eu-west-2",
        node_count: int = 3,
        tags: dict[str, str] | None = None,
        placeholders: bool = True,
    ) -> None:
        """A service as Aiven lists it. ``placeholders`` adds the null-id "possible integration"
        entries the real list carries (one of them a prometheus entry to every endpoint)."""
        with self.lock:
            ph = []
            if placeholders:
                for ep in self.endpoints.values():
                    ph.append(
                        self._integration(
                            None, "prometheus", name, service_type, ep["endpoint_id"], enabled=False
                        )
                    )
                ph.append(
                    self._integration(None, "alertmanager", name, service_type, None, enabled=False)
                )
            self.services[name] = _Service(
                name, service_type, state, plan, cloud, node_count, dict(tags or {}), ph
            )
            self._changed()

    def set_state(self, name: str, state: str) -> None:
        with self.lock:
            self.services[name].state = state
            self._changed()

    def delete_service(self, name: str) -> None:
        with self.lock:
            del self.services[name]
            for iid in [i for i, v in self.integrations.items() if v["source_service"] == name]:
                del self.integrations[iid]
            self._changed()

    def add_integration(
        self,
        service: str,
        endpoint_id: str,
        *,
        enabled: bool = True,
        integration_type: str = "prometheus",
    ) -> str:
        """An integration that already exists (made by someone else, or earlier)."""
        with self.lock:
            iid = str(uuid.uuid4())
            svc = self.services[service]
            self.integrations[iid] = self._integration(
                iid, integration_type, service, svc.type, endpoint_id, enabled=enabled
            )
            self._changed()
            return iid

    def integrations_for(
        self, service: str, endpoint_id: str | None = None
    ) -> list[dict[str, Any]]:
        with self.lock:
            return [
                dict(v)
                for v in self.integrations.values()
                if v["source_service"] == service
                and (endpoint_id is None or v["dest_endpoint_id"] == endpoint_id)
            ]

    def host_of(self, name: str) -> str:
        return f"{name}-{self.project}.aivencloud.com"

    # -- shapes -------------------------------------------------------------------------
    def _integration(
        self,
        iid: str | None,
        itype: str,
        source: str,
        source_type: str,
        endpoint_id: str | None,
        *,
        enabled: bool,
    ) -> dict[str, Any]:
        ep = self.endpoints.get(endpoint_id or "")
        return {
            "service_integration_id": iid,
            "integration_type": itype,
            "enabled": enabled,
            "active": enabled,
            "description": f"Send {source} metrics to Prometheus",
            "source_service": source,
            "source_service_type": source_type,
            "source_project": self.project,
            "source_endpoint": None,
            "source_endpoint_id": None,
            "dest_endpoint_id": endpoint_id,
            "dest_endpoint": ep["endpoint_name"] if ep else None,
            "dest_service": None,
            "dest_project": self.project,
            "dest_service_type": "prometheus" if itype == "prometheus" else itype,
            "integration_status": (
                {
                    "state": {"status": "running", "errors": [], "nodes": {}},
                    "status_user_desc": "Integration is running",
                }
                if iid
                else None
            ),
            "user_config": {},
        }

    def _service_json(self, svc: _Service) -> dict[str, Any]:
        host = self.host_of(svc.name)
        password = "svc-" + svc.name[-8:]
        integrations = [v for v in self.integrations.values() if v["source_service"] == svc.name]
        body: dict[str, Any] = {
            "service_name": svc.name,
            "service_type": svc.type,
            "state": svc.state,
            "plan": svc.plan,
            "cloud_name": svc.cloud,
            "cloud_description": "Europe, England - Amazon Web Services: London",
            "node_count": svc.node_count,
            "node_cpu_count": 2,
            "node_memory_mb": 4096.0,
            "disk_space_mb": 81920,
            "group_list": ["default"],
            "project_vpc_id": None,
            "service_uri": f"https://avnadmin:{password}@{host}:21345",
            "service_uri_params": {
                "host": host,
                "port": "21345",
                "user": "avnadmin",
                "password": password,
            },
            "components": [
                {
                    "component": svc.type,
                    "host": host,
                    "port": 21345,
                    "route": "dynamic",
                    "usage": "primary",
                },
                {
                    "component": "prometheus",
                    "host": host,
                    "port": 9273,
                    "route": "dynamic",
                    "usage": "primary",
                },
            ],
            "node_states": [
                {
                    "name": f"{svc.name}-{i}",
                    "state": "running" if svc.state == "RUNNING" else "unknown",
                    "availability_zone": f"eu-west-2{'abc'[i % 3]}",
                }
                for i in range(1, svc.node_count + 1)
            ],
            "service_integrations": svc.placeholders + integrations,
            "users": [{"username": "avnadmin", "password": password, "type": "primary"}],
            "maintenance": {"dow": "monday", "time": "04:00:00", "updates": []},
            "metadata": {},
            "features": {},
            "backups": [],
            "databases": [],
            "service_notifications": [],
            "termination_protection": False,
            "service_type_description": "OpenSearch - Search & Analyze Data",
            "user_config": {"public_access": {"prometheus": False}},
            "create_time": "2024-05-01T10:00:00Z",
            "update_time": "2024-05-02T08:30:00Z",
        }
        if svc.tags:
            body["tags"] = dict(svc.tags)
        return body

    # -- routing ------------------------------------------------------------------------
    def rate_limit_reply(self, fault: Fault) -> Reply:
        wait = int(fault.retry_after if fault.retry_after is not None else 1)
        msg = (
            f"The user has sent too many requests in a given amount of time: "
            f"Rate limit 120 exceeded - try again in {wait}s"
        )
        reply = _error(429, msg)
        if fault.header and fault.retry_after is not None:
            reply.headers["Retry-After"] = str(wait)
        return reply

    def call_key(self, req: Request) -> str:
        path = re.sub(r"/integration/[^/]+$", "/integration/{id}", req.path)
        path = re.sub(r"/service/[^/]+", "/service/{name}", path)
        path = re.sub(r"/integration_endpoint/[^/]+$", "/integration_endpoint/{id}", path)
        return f"{req.method} {path.replace(_PREFIX + self.project, _PREFIX + '{project}')}"

    def route(self, req: Request) -> Reply:
        auth = req.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() not in ("aivenv1", "bearer") or token not in self.tokens:
            return _error(403, "Invalid token")
        if not req.path.startswith(_PREFIX):
            return _error(404, "Not found")
        project, _, rest = req.path[len(_PREFIX) :].partition("/")
        if project != self.project:
            return _error(403, f"Project does not exist or you do not have access to it: {project}")
        parts = rest.split("/") if rest else []
        with self.lock:
            return self._dispatch(req, parts)

    def _dispatch(self, req: Request, parts: list[str]) -> Reply:
        m = req.method
        if parts == ["service"] and m == "GET":
            return self._list_services()
        if len(parts) == 2 and parts[0] == "service" and m == "GET":
            svc = self.services.get(parts[1])
            if svc is None:
                return _error(404, f"Service {parts[1]} does not exist")
            return self._json({"service": self._service_json(svc)})
        if len(parts) == 3 and parts[0] == "service" and parts[2] == "integration" and m == "GET":
            if parts[1] not in self.services:
                return _error(404, f"Service {parts[1]} does not exist")
            return self._json(
                {
                    "service_integrations": self._service_json(self.services[parts[1]])[
                        "service_integrations"
                    ]
                }
            )
        if parts == ["integration_endpoint"] and m == "GET":
            return self._json(
                {
                    "service_integration_endpoints": [
                        self._endpoint(e, req) for e in self.endpoints.values()
                    ]
                }
            )
        if len(parts) == 2 and parts[0] == "integration_endpoint" and m == "GET":
            ep = self.endpoints.get(parts[1])
            if ep is None:
                return _error(404, "Service integration endpoint not found")
            return self._json({"service_integration_endpoint": self._endpoint(ep, req)})
        if parts == ["integration"] and m == "POST":
            return self._create_integration(req)
        if len(parts) == 2 and parts[0] == "integration":
            found = self.integrations.get(parts[1])
            if found is None:
                return _error(404, "Service integration not found")
            if m == "GET":
                return self._json({"service_integration": found})
            if m == "DELETE":
                del self.integrations[parts[1]]
                self._changed()
                return self._json({"message": "deleted"})
        if parts == ["kms", "ca"] and m == "GET":
            return self._json({"certificate": self.ca_certificate})
        return _error(404, "Not found")

    def _json(self, payload: Any, status: int = 200) -> Reply:
        return Reply(status, json.dumps(payload).encode(), self.content_type)

    def answer_empty_lists(self, count: int = -1) -> None:
        """Fault: the next ``count`` service listings (-1: every one, 0: none) answer a
        successful but empty list while the services still exist."""
        with self._create_lock:
            self._empty_lists = count

    def _list_services(self) -> Reply:
        with self._create_lock:
            empty = self._empty_lists != 0
            if self._empty_lists > 0:
                self._empty_lists -= 1
        if empty:
            return self._json({"services": []})
        # The real list is one unpaged array; cache the body so a 10,000-service fake is cheap.
        if self._list_cache is None or self._list_cache[0] != self._version:
            body = json.dumps(
                {"services": [self._service_json(s) for s in self.services.values()]}
            ).encode()
            self._list_cache = (self._version, body)
        return Reply(200, self._list_cache[1], self.content_type)

    def _endpoint(self, ep: dict[str, Any], req: Request) -> dict[str, Any]:
        if req.q("include_secrets") == "true":
            return ep
        redacted = dict(ep)
        redacted["user_config"] = {
            k: v for k, v in ep["user_config"].items() if "password" not in k
        }
        return redacted

    def _create_integration(self, req: Request) -> Reply:
        try:
            body = req.json()
        except ValueError:
            return _error(400, "Invalid JSON in request body")
        if not isinstance(body, dict) or not body.get("integration_type"):
            return _error(400, "Missing required field: integration_type")
        source, endpoint_id = body.get("source_service"), body.get("dest_endpoint_id")
        svc = self.services.get(source or "")
        if svc is None:
            return _error(404, f"Service {source} does not exist")
        if endpoint_id not in self.endpoints:
            return _error(404, "Service integration endpoint not found")
        if svc.plan.startswith("hobbyist"):
            return _error(400, "Service integrations are not available on the Hobbyist plan")
        if svc.state != "RUNNING":
            return _error(400, f"Service {source} is not running")
        existing = [
            v
            for v in self.integrations.values()
            if v["source_service"] == source
            and v["dest_endpoint_id"] == endpoint_id
            and v["integration_type"] == body["integration_type"]
        ]
        if existing and self.duplicates == "conflict":
            return _error(409, "Service integration already exists")
        iid = str(uuid.uuid4())
        self.integrations[iid] = self._integration(
            iid, body["integration_type"], str(source), svc.type, endpoint_id, enabled=True
        )
        self.integrations[iid]["active"] = False  # becomes active later, as the real API does
        self.created_by.append((str(source), iid))
        self._changed()
        return self._json({"service_integration": self.integrations[iid], "message": "created"})


def populate(
    fake: FakeAiven,
    count: int,
    *,
    prefix: str,
    endpoint_id: str,
    integrated: bool = True,
    tags: bool = True,
    types: Iterable[str] = ("opensearch",),
) -> list[str]:
    """Fill a fake with ``count`` broker-made services (for benchmarks and the demo).

    Service i is ``<prefix>-<uuid5(i)>``, tagged with org/space guids derived the same way
    (10 services per space, 10 spaces per org), so a fake CC can hold the matching owners.
    """
    names = []
    type_list = list(types)
    for i in range(count):
        guid = instance_guid(i)
        name = f"{prefix}-{guid}"
        t = (
            {"organization_id": org_guid(i), "space_id": space_guid(i), "service_id": guid}
            if tags
            else {}
        )
        fake.add_service(name, type_list[i % len(type_list)], tags=t)
        if integrated:
            fake.add_integration(name, endpoint_id)
        names.append(name)
    return names


_NS = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")


def instance_guid(i: int) -> str:
    return str(uuid.uuid5(_NS, f"instance-{i}"))


def space_guid(i: int) -> str:
    return str(uuid.uuid5(_NS, f"space-{i // 10}"))


def org_guid(i: int) -> str:
    return str(uuid.uuid5(_NS, f"org-{i // 100}"))


def main() -> None:
    """``python -m tenant_metrics.fakes.aiven --port 8099 --services 10``: a populated fake for local use."""
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Fake Aiven API (tests, benchmarks, demo)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--project", default="tenant-metrics-demo")
    parser.add_argument("--token", default="aiven-token")
    parser.add_argument("--endpoint-id", default="7a1b2c3d-0000-4000-8000-00000000de00")
    parser.add_argument("--services", type=int, default=0, help="populate with this many services")
    parser.add_argument("--prefix", default="demo")
    parser.add_argument("--not-integrated", action="store_true", help="leave integrations to sd")
    args = parser.parse_args()
    fake = FakeAiven(args.project, args.token, host=args.host, port=args.port)
    fake.add_endpoint(args.endpoint_id)
    populate(
        fake,
        args.services,
        prefix=args.prefix,
        endpoint_id=args.endpoint_id,
        integrated=not args.not_integrated,
    )
    fake.start()
    print(
        f"fake Aiven at {fake.url} (project {args.project}, endpoint {args.endpoint_id})",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
