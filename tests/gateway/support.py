"""Gateway test helpers: tenants in a real DB, and a recording upstream on real HTTP."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete

from common import credentials, db
from common.models import Binding, ServiceInstance

KEY = credentials.derive_key("gateway-tests-key-material")


@dataclass(frozen=True, slots=True)
class TenantCreds:
    username: str
    password: str = field(repr=False)
    instance_id: str
    binding_id: str
    org: str
    space: str

    @property
    def auth(self) -> tuple[str, str]:
        return (self.username, self.password)


def add_tenant(database_url: str, scope: str, org: str, space: str) -> TenantCreds:
    """Insert an instance and a binding as the broker would (common.models + credentials.issue)."""
    engine = db.make_engine(database_url)
    try:
        issued = credentials.issue(KEY)
        instance_id = str(uuid.uuid4())
        binding_id = str(uuid.uuid4())
        with db.session_scope(db.make_session_factory(engine), write=True) as session:
            session.add(
                ServiceInstance(
                    id=instance_id,
                    service_id="svc",
                    plan_id=f"plan-{scope}",
                    scope=scope,
                    organization_guid=org,
                    space_guid=space,
                    parameters={},
                    request_fingerprint="fp",
                )
            )
            session.flush()
            session.add(
                Binding(
                    id=binding_id,
                    instance_id=instance_id,
                    service_id="svc",
                    plan_id=f"plan-{scope}",
                    app_guid=None,
                    kind="key",
                    username=issued.username,
                    secret_nonce=issued.secret_nonce,
                    password_sha256=issued.password_sha256,
                    request_fingerprint="fp",
                )
            )
        return TenantCreds(issued.username, issued.password, instance_id, binding_id, org, space)
    finally:
        engine.dispose()


def revoke(database_url: str, binding_id: str) -> None:
    engine = db.make_engine(database_url)
    try:
        with db.session_scope(db.make_session_factory(engine), write=True) as session:
            session.execute(delete(Binding).where(Binding.id == binding_id))
    finally:
        engine.dispose()


@dataclass
class Recorded:
    method: str
    path: str
    query: list[tuple[str, str]]
    form: list[tuple[str, str]]
    headers: dict[str, str]

    def params(self) -> list[tuple[str, str]]:
        return self.query + self.form

    def get(self, name: str) -> list[str]:
        return [v for k, v in self.params() if k == name]


TARGETS = {
    "status": "success",
    "data": {
        "activeTargets": [
            {
                "labels": {"job": "aiven", "cf_space_guid": "space-a", "cf_organization_guid": "org-1"},
                "discoveredLabels": {"__address__": "a:9273"},
                "scrapeUrl": "http://a:9273/metrics",
                "health": "up",
            },
            {
                "labels": {"job": "aiven", "cf_space_guid": "space-b", "cf_organization_guid": "org-2"},
                "discoveredLabels": {"__address__": "b:9273"},
                "scrapeUrl": "http://b:9273/metrics",
                "health": "up",
            },
        ],
        "droppedTargets": [{"discoveredLabels": {"__address__": "secret:1"}}],
    },
}


class RecordingUpstream:
    """A WSGI app that records every request and answers like Prometheus (canned data)."""

    def __init__(self, name: str = "primary") -> None:
        self.name = name
        self.requests: list[Recorded] = []
        self.fail_status: int | None = None
        self.fail_body: bytes = b'{"status":"error","errorType":"internal","error":"boom"}'
        self._lock = threading.Lock()

    def paths(self) -> list[str]:
        return [r.path for r in self.requests if r.path != "/-/ready"]

    def last(self) -> Recorded:
        real = [r for r in self.requests if r.path != "/-/ready"]
        return real[-1]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        from urllib.parse import parse_qsl

        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        rec = Recorded(
            method=environ["REQUEST_METHOD"],
            path=environ.get("PATH_INFO", ""),
            query=parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True),
            form=parse_qsl(body.decode("latin-1"), keep_blank_values=True),
            headers={k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")},
        )
        with self._lock:
            self.requests.append(rec)
        if rec.path == "/-/ready":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ready"]
        if self.fail_status is not None:
            start_response(f"{self.fail_status} Failed", [("Content-Type", "application/json")])
            return [self.fail_body]
        data: Any
        if rec.path == "/api/v1/targets":
            payload = TARGETS
        elif rec.path == "/api/v1/targets/metadata" and rec.get("metric"):
            # With ?metric=, Prometheus leaves "metric" out of each entry.
            payload = {"status": "success", "data": [
                {"target": {"job": "a"}, "type": "counter", "help": "mine", "unit": ""},
            ]}
        elif rec.path == "/api/v1/targets/metadata":
            # What Prometheus answers for match_target={<the tenant>}: two targets, one name twice.
            payload = {
                "status": "success",
                "data": [
                    {"target": {"job": "a"}, "metric": "mine_total", "type": "counter", "help": "mine", "unit": ""},
                    {"target": {"job": "b"}, "metric": "mine_total", "type": "counter", "help": "mine", "unit": ""},
                    {"target": {"job": "b"}, "metric": "up_seconds", "type": "gauge", "help": "up", "unit": "seconds"},
                ],
            }
        else:
            data = {"resultType": "vector", "result": [], "upstream": self.name}
            payload = {"status": "success", "data": data}
        start_response("200 OK", [("Content-Type", "application/json"), ("Set-Cookie", "upstream=secret")])
        return [json.dumps(payload).encode()]
