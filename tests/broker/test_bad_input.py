"""Every kind of bad request gets the right status and an OSB JSON description, and writes nothing.

Validation happens before the database is touched, so this table runs against one
module-wide broker on SQLite; the cases that reach the database run on both in test_api.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from broker.app import create_app
from broker.config import from_env
from tenant_metrics.core import db
from tenant_metrics.core.db import make_engine
from tenant_metrics.core.models import AuditEvent, Binding, ServiceInstance
from tests.broker.conftest import PASSWORD, USERNAME, broker_env
from tests.support import serve_wsgi

SID = "10cdfd27-97b4-4f39-9583-a56f77a858cd"
SPACE = "bc41c325-d6d4-4177-8fb3-f2432b93957f"
CTX = {"platform": "cloudfoundry", "organization_guid": "o", "space_guid": "s"}
GOOD_PROVISION = {"service_id": SID, "plan_id": SPACE, "context": CTX}
GOOD_BIND = {"service_id": SID, "plan_id": SPACE, "app_guid": "a"}
INSTANCE = "/v2/service_instances/i-1"
BINDING = "/v2/service_instances/i-1/service_bindings/b-1"
DELETE_QS = f"?service_id={SID}&plan_id={SPACE}"


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    status: int
    says: str
    body: Any = None
    raw: bytes | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    auth: tuple[str, str] | None = (USERNAME, PASSWORD)
    version: str | None = "2.17"
    error: str | None = None


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = {**base, **changes}
    return {k: v for k, v in out.items() if v is not ...}


CASES = [
    # Authentication comes first, whatever else is wrong.
    Case("no credentials", "PUT", INSTANCE, 401, "credentials", raw=b"[", auth=None, version=None),
    Case("wrong password", "GET", "/v2/catalog", 401, "credentials", auth=(USERNAME, PASSWORD + "x")),
    Case("wrong username", "GET", "/v2/catalog", 401, "credentials", auth=("someone", PASSWORD)),
    Case("no credentials on unknown path", "GET", "/nowhere", 401, "credentials", auth=None),
    Case("bearer instead of basic", "GET", "/v2/catalog", 401, "credentials", auth=None,
         headers={"Authorization": "Bearer " + PASSWORD}),
    # Then the API version.
    Case("no version header", "GET", "/v2/catalog", 412, "X-Broker-API-Version", version=None),
    Case("version below 2.13", "GET", "/v2/catalog", 412, "2.13", version="2.12"),
    Case("version not a number", "GET", "/v2/catalog", 412, "X-Broker-API-Version", version="abc"),
    Case("version 1.x", "PUT", INSTANCE, 412, "2.13", body=GOOD_PROVISION, version="1.99"),
    # Routes.
    Case("unknown path", "GET", "/v2/nothing-here", 404, "not found"),
    Case("wrong method", "POST", "/v2/catalog", 405, "not allowed"),
    # Bodies.
    Case("malformed JSON", "PUT", INSTANCE, 400, "not valid JSON", raw=b'{"service_id": '),
    Case("not UTF-8", "PUT", INSTANCE, 400, "not valid JSON", raw=b'{"a": "\xff"}'),
    Case("JSON array", "PUT", INSTANCE, 400, "JSON object", body=[GOOD_PROVISION]),
    Case("JSON string", "PUT", INSTANCE, 400, "JSON object", body="x"),
    Case("JSON null", "PUT", INSTANCE, 400, "JSON object", raw=b"null"),
    Case("wrong content type", "PUT", INSTANCE, 400, "Content-Type", raw=b"{}", content_type="text/plain"),
    Case("empty body", "PUT", INSTANCE, 400, "not valid JSON", raw=b""),
    Case("body too large", "PUT", INSTANCE, 413, "at most", raw=b'{"x": "' + b"a" * 70_000 + b'"}'),
    Case("missing service_id", "PUT", INSTANCE, 400, "service_id is required", body=_with(GOOD_PROVISION, service_id=...)),
    Case("unknown service_id", "PUT", INSTANCE, 400, "not offered", body=_with(GOOD_PROVISION, service_id="other")),
    Case("service_id wrong type", "PUT", INSTANCE, 400, "service_id must be a non-empty string", body=_with(GOOD_PROVISION, service_id=7)),
    Case("missing plan_id", "PUT", INSTANCE, 400, "plan_id is required", body=_with(GOOD_PROVISION, plan_id=...)),
    Case("unknown plan_id", "PUT", INSTANCE, 400, "is not a plan", body=_with(GOOD_PROVISION, plan_id="gold")),
    Case("plan_id wrong type", "PUT", INSTANCE, 400, "plan_id must be", body=_with(GOOD_PROVISION, plan_id=["x"])),
    Case("no org or space", "PUT", INSTANCE, 400, "organization_guid is required", body=_with(GOOD_PROVISION, context=...)),
    Case("context not an object", "PUT", INSTANCE, 400, "context must be a JSON object", body=_with(GOOD_PROVISION, context="o")),
    Case("org guids disagree", "PUT", INSTANCE, 400, "differ", body=_with(GOOD_PROVISION, organization_guid="other")),
    Case("space guid wrong type", "PUT", INSTANCE, 400, "space_guid must be", body=_with(GOOD_PROVISION, context={**CTX, "space_guid": 5})),
    Case("instance name wrong type", "PUT", INSTANCE, 400, "instance_name must be a string", body=_with(GOOD_PROVISION, context={**CTX, "instance_name": 1})),
    Case("unknown parameters", "PUT", INSTANCE, 400, "unknown parameter(s): colour", body=_with(GOOD_PROVISION, parameters={"colour": "red"})),
    Case("parameters not an object", "PUT", INSTANCE, 400, "parameters must be a JSON object", body=_with(GOOD_PROVISION, parameters=[1])),
    Case("maintenance_info", "PUT", INSTANCE, 422, "maintenance_info", body=_with(GOOD_PROVISION, maintenance_info={"version": "1.0.0"}),
         error="MaintenanceInfoConflict"),
    Case("maintenance_info not an object", "PUT", INSTANCE, 400, "maintenance_info must be a JSON object",
         body=_with(GOOD_PROVISION, maintenance_info="1.0.0")),
    Case("maintenance_info version wrong type", "PUT", INSTANCE, 400, "maintenance_info.version must be a string",
         body=_with(GOOD_PROVISION, maintenance_info={"version": 1})),
    Case("update maintenance_info version", "PATCH", INSTANCE, 422, "maintenance_info",
         body={"service_id": SID, "maintenance_info": {"version": "1.0.0"}}, error="MaintenanceInfoConflict"),
    Case("instance id too long", "PUT", "/v2/service_instances/" + "i" * 300, 400, "instance_id must be", body=GOOD_PROVISION),
    Case("NUL in instance id", "PUT", "/v2/service_instances/i%00x", 400, "control characters", body=GOOD_PROVISION),
    Case("NUL in org guid", "PUT", INSTANCE, 400, "control characters", body=_with(GOOD_PROVISION, context={**CTX, "organization_guid": "o\x00"})),
    Case("NUL in instance name", "PUT", INSTANCE, 400, "NUL", body=_with(GOOD_PROVISION, context={**CTX, "instance_name": "a\x00b"})),
    Case("NUL in app guid", "PUT", BINDING, 400, "control characters", body=_with(GOOD_BIND, app_guid="a\x00")),
    Case("NUL in originating user id", "PUT", INSTANCE, 400, "NUL", body=GOOD_PROVISION,
         headers={"X-Broker-API-Originating-Identity": "cloudfoundry eyJ1c2VyX2lkIjogInVcdTAwMDAifQ=="}),
    Case("bad originating identity", "PUT", INSTANCE, 400, "Originating-Identity", body=GOOD_PROVISION,
         headers={"X-Broker-API-Originating-Identity": "cloudfoundry not-base64!"}),
    Case("originating identity not an object", "PUT", INSTANCE, 400, "Originating-Identity", body=GOOD_PROVISION,
         headers={"X-Broker-API-Originating-Identity": "cloudfoundry WzFd"}),
    # Update.
    Case("update without service_id", "PATCH", INSTANCE, 400, "service_id is required", body={"plan_id": SPACE}),
    Case("update to unknown plan", "PATCH", INSTANCE, 400, "is not a plan", body={"service_id": SID, "plan_id": "gold"}),
    Case("update with parameters", "PATCH", INSTANCE, 400, "unknown parameter(s): size", body={"service_id": SID, "parameters": {"size": 1}}),
    Case("update previous_values wrong type", "PATCH", INSTANCE, 400, "previous_values must be", body={"service_id": SID, "previous_values": 3}),
    Case("update non-object", "PATCH", INSTANCE, 400, "JSON object", body=[1]),
    # Bind.
    Case("bind unknown plan", "PUT", BINDING, 400, "is not a plan", body=_with(GOOD_BIND, plan_id="gold")),
    Case("bind unknown service", "PUT", BINDING, 400, "not offered", body=_with(GOOD_BIND, service_id="x")),
    Case("bind with parameters", "PUT", BINDING, 400, "unknown parameter(s): ttl", body=_with(GOOD_BIND, parameters={"ttl": 3})),
    Case("bind_resource wrong type", "PUT", BINDING, 400, "bind_resource must be", body=_with(GOOD_BIND, bind_resource=[])),
    Case("app_guid wrong type", "PUT", BINDING, 400, "app_guid must be", body=_with(GOOD_BIND, app_guid=1)),
    Case("app guids disagree", "PUT", BINDING, 400, "differ", body=_with(GOOD_BIND, bind_resource={"app_guid": "b"})),
    Case("binding id too long", "PUT", "/v2/service_instances/i-1/service_bindings/" + "b" * 300, 400, "binding_id must be", body=GOOD_BIND),
    # Query strings.
    Case("deprovision without plan_id", "DELETE", INSTANCE + f"?service_id={SID}", 400, "plan_id is required"),
    Case("deprovision without service_id", "DELETE", INSTANCE + f"?plan_id={SPACE}", 400, "service_id is required"),
    Case("deprovision unknown plan", "DELETE", INSTANCE + f"?service_id={SID}&plan_id=gold", 400, "is not a plan"),
    Case("unbind unknown service", "DELETE", BINDING + f"?service_id=x&plan_id={SPACE}", 400, "not offered"),
    Case("unbind without query", "DELETE", BINDING, 400, "service_id is required"),
    Case("get instance wrong service_id", "GET", INSTANCE + "?service_id=x", 400, "not offered"),
    Case("last_operation wrong plan", "GET", INSTANCE + "/last_operation?plan_id=x", 400, "not a plan"),
]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('bad-input') / 'broker.sqlite3'}"
    db.upgrade(url)
    app = create_app(from_env(broker_env(url)), registry=CollectorRegistry(), configure_logging=False)
    with serve_wsgi(app) as base:
        yield base, url
    app.extensions["tenant_metrics_broker"].store.engine.dispose()


def _send(base: str, case: Case) -> requests.Response:
    headers = {"Content-Type": case.content_type, **case.headers}
    if case.version is not None:
        headers["X-Broker-API-Version"] = case.version
    data = case.raw if case.raw is not None else (json.dumps(case.body).encode() if case.body is not None else None)
    return requests.request(case.method, base + case.path, data=data, headers=headers, auth=case.auth, timeout=10)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_request_is_refused_clearly(shared: tuple[str, str], case: Case) -> None:
    base, _ = shared
    r = _send(base, case)
    assert r.status_code == case.status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert isinstance(body, dict) and case.says.lower() in body["description"].lower(), body
    assert "Traceback" not in r.text
    if case.error:
        assert body["error"] == case.error
    if case.status == 401:
        assert r.headers["WWW-Authenticate"].startswith("Basic")
    if case.status == 405:
        assert "GET" in r.headers["Allow"]


def test_chunked_oversized_body_is_413(shared: tuple[str, str]) -> None:
    base, _ = shared

    def chunks() -> Iterator[bytes]:
        yield b'{"service_id": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    r = requests.put(base + INSTANCE, data=chunks(), auth=(USERNAME, PASSWORD), timeout=10,
                     headers={"X-Broker-API-Version": "2.17", "Content-Type": "application/json"})
    assert r.status_code == 413 and "at most" in r.json()["description"]


def test_refused_requests_leave_nothing_behind(shared: tuple[str, str]) -> None:
    base, url = shared
    for case in CASES:  # the table again, in one go, then look at the tables
        assert _send(base, case).status_code == case.status
    engine = make_engine(url)
    try:
        with Session(engine) as s:
            for model in (ServiceInstance, Binding, AuditEvent):
                assert s.scalar(select(func.count()).select_from(model)) == 0
    finally:
        engine.dispose()


def test_version_2_13_is_accepted(shared: tuple[str, str]) -> None:
    base, _ = shared
    r = requests.get(base + "/v2/catalog", auth=(USERNAME, PASSWORD), headers={"X-Broker-API-Version": "2.13"}, timeout=10)
    assert r.status_code == 200 and r.json()["services"]


def test_health_endpoints_need_no_credentials(shared: tuple[str, str]) -> None:
    base, _ = shared
    assert requests.get(base + "/healthz", timeout=10).json() == {"status": "ok"}
    assert requests.get(base + "/readyz", timeout=10).status_code == 200
    assert requests.get(base + "/metrics", timeout=10).status_code == 200

