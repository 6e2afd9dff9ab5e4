"""An independent OSB 2.17 conformance check, written from the spec (openservicebrokerapi/servicebroker
spec.md), not from our code: it learns ids from GET /v2/catalog and speaks plain HTTP.

Two tables: the catalog's required shape (field by field), and a scenario of calls, each with
the status codes the spec allows and a check of the response body.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.broker.conftest import PASSWORD, USERNAME

CLI_FRIENDLY = re.compile(r"^[A-Za-z0-9.-]+$")  # spec: alphanumerics, periods, hyphens, no spaces
STATES = {"in progress", "succeeded", "failed"}


# -- catalog --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Field:
    name: str
    kind: type | tuple[type, ...]
    required: bool = False
    check: Callable[[Any], bool] | None = None
    rule: str = ""


def _nonempty(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _strings(v: Any) -> bool:
    return all(isinstance(x, str) for x in v)


def _schema_ok(schemas: dict[str, Any]) -> bool:
    """Every `parameters` schema declares $schema and is under 64 kB, with no external $ref."""
    found = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "parameters" in node and isinstance(node["parameters"], dict):
                found.append(node["parameters"])
            for v in node.values():
                walk(v)

    walk(schemas)
    return all("$schema" in p and len(json.dumps(p)) < 64 * 1024 and '"$ref": "http' not in json.dumps(p) for p in found)


SERVICE_FIELDS = [
    Field("name", str, True, lambda v: _nonempty(v) and bool(CLI_FRIENDLY.match(v)), "non-empty, CLI-friendly"),
    Field("id", str, True, _nonempty, "non-empty"),
    Field("description", str, True, lambda v: _nonempty(v) and len(v) <= 255, "non-empty, <= 255 chars"),
    Field("tags", list, False, _strings, "strings"),
    Field("requires", list, False, lambda v: set(v) <= {"syslog_drain", "route_forwarding", "volume_mount"}),
    Field("bindable", bool, True),
    Field("instances_retrievable", bool),
    Field("bindings_retrievable", bool),
    Field("allow_context_updates", bool),
    Field("metadata", dict),
    Field("dashboard_client", dict),
    Field("plan_updateable", bool),
    Field("plans", list, True, lambda v: len(v) >= 1, "at least one plan"),
]
PLAN_FIELDS = [
    Field("id", str, True, _nonempty, "non-empty"),
    Field("name", str, True, lambda v: _nonempty(v) and bool(CLI_FRIENDLY.match(v)), "non-empty, CLI-friendly"),
    Field("description", str, True, lambda v: _nonempty(v) and len(v) <= 255, "non-empty, <= 255 chars"),
    Field("metadata", dict),
    Field("free", bool),
    Field("bindable", bool),
    Field("plan_updateable", bool),
    Field("schemas", dict, False, _schema_ok, "parameters schemas declare $schema, < 64 kB, no external refs"),
    Field("maximum_polling_duration", int),
    Field("maintenance_info", dict, False, lambda v: isinstance(v.get("version"), str)),
]


def _check_fields(where: str, obj: dict[str, Any], fields: list[Field]) -> list[str]:
    problems = []
    for f in fields:
        if f.name not in obj:
            if f.required:
                problems.append(f"{where}: required field {f.name!r} missing")
            continue
        value = obj[f.name]
        if not isinstance(value, f.kind) or (f.kind is int and isinstance(value, bool)):
            problems.append(f"{where}.{f.name}: expected {f.kind}, got {type(value).__name__}")
        elif f.check is not None and not f.check(value):
            problems.append(f"{where}.{f.name}: {f.rule or 'invalid'}: {value!r}")
    return problems


def catalog_problems(catalog: Any) -> list[str]:
    if not isinstance(catalog, dict) or not isinstance(catalog.get("services"), list):
        return ["catalog: 'services' array required"]
    problems: list[str] = []
    names, ids = set(), []
    for i, service in enumerate(catalog["services"]):
        where = f"services[{i}]"
        problems += _check_fields(where, service, SERVICE_FIELDS)
        if service.get("name") in names:
            problems.append(f"{where}: duplicate service name")
        names.add(service.get("name"))
        ids.append(service.get("id"))
        plan_names = set()
        for j, plan in enumerate(service.get("plans") or []):
            problems += _check_fields(f"{where}.plans[{j}]", plan, PLAN_FIELDS)
            if plan.get("name") in plan_names:
                problems.append(f"{where}.plans[{j}]: plan name not unique in its service")
            plan_names.add(plan.get("name"))
            ids.append(plan.get("id"))
        if service.get("bindings_retrievable") and not service.get("bindable"):
            problems.append(f"{where}: bindings_retrievable without bindable")
    if len(ids) != len(set(ids)):
        problems.append("catalog: ids of services and plans must be unique")
    return problems


def test_the_checker_itself_catches_broken_catalogs() -> None:
    good = {"services": [{"name": "a", "id": "1", "description": "d", "bindable": True,
                          "plans": [{"id": "2", "name": "p", "description": "d"}]}]}
    assert catalog_problems(good) == []
    assert catalog_problems({}) == ["catalog: 'services' array required"]
    broken = json.loads(json.dumps(good))
    broken["services"][0]["name"] = "has space"
    broken["services"][0]["plans"].append({"id": "1", "name": "p", "description": "", "free": "yes"})
    del broken["services"][0]["bindable"]
    found = "\n".join(catalog_problems(broken))
    for expected in ("CLI-friendly", "'bindable' missing", "not unique", "free: expected", "ids of services and plans"):
        assert expected in found


# -- the scenario -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """One call: what the spec lets the broker answer, and what the body must look like."""

    name: str
    method: str
    path: str
    allowed: frozenset[int]
    body: Callable[[dict[str, str]], Any] | None = None
    check: Callable[[Any], bool] = lambda body: isinstance(body, dict)
    headers: tuple[tuple[str, str], ...] = ()
    auth: bool = True
    version: str | None = "2.17"


def _codes(*codes: int) -> frozenset[int]:
    return frozenset(codes)


def _provision(ids: dict[str, str], plan: str = "plan_a", **extra: Any) -> dict[str, Any]:
    return {
        "service_id": ids["service"], "plan_id": ids[plan],
        "organization_guid": "org-guid", "space_guid": "space-guid",
        "context": {"platform": "cloudfoundry", "organization_guid": "org-guid", "space_guid": "space-guid",
                    "organization_name": "org", "space_name": "space", "instance_name": "si"},
        **extra,
    }


def _bind(ids: dict[str, str], app: str = "app-guid") -> dict[str, Any]:
    return {"service_id": ids["service"], "plan_id": ids["plan_a"], "app_guid": app,
            "bind_resource": {"app_guid": app}, "context": {"platform": "cloudfoundry"}}


def _error_body(body: Any) -> bool:
    """Spec: error bodies are objects; `error` and `description`, when present, are strings."""
    return (isinstance(body, dict) and isinstance(body.get("description", ""), str)
            and isinstance(body.get("error", ""), str))


def _provision_body(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("dashboard_url", ""), str) and "operation" not in body


def _credentials(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("credentials"), dict) and bool(body["credentials"])


def _last_op(body: Any) -> bool:
    return isinstance(body, dict) and body.get("state") in STATES


I = "/v2/service_instances/{iid}"  # noqa: E741 - the OSB spec's own shorthand
B = "/v2/service_instances/{iid}/service_bindings/{bid}"
DQ = "?service_id={service}&plan_id={plan_a}"
DQ_B = "?service_id={service}&plan_id={plan_b}"

SCENARIO = [
    Step("catalog without credentials", "GET", "/v2/catalog", _codes(401), auth=False, check=_error_body),
    Step("catalog with an old API version", "GET", "/v2/catalog", _codes(412), version="2.12", check=_error_body),
    Step("GET unknown instance", "GET", I, _codes(404), check=_error_body),
    Step("provision (sync broker, accepts_incomplete=false)", "PUT", I + "?accepts_incomplete=false", _codes(201),
         body=_provision, check=_provision_body),
    Step("provision repeated identically", "PUT", I + "?accepts_incomplete=true", _codes(200), body=_provision,
         check=_provision_body),
    Step("provision with an unknown extra field (MUST be ignored)", "PUT", I, _codes(200),
         body=lambda ids: _provision(ids, future_field={"x": 1}), check=_provision_body),
    Step("provision same id, other plan", "PUT", I, _codes(409), body=lambda ids: _provision(ids, "plan_b"),
         check=_error_body),
    Step("provision with unknown plan", "PUT", "/v2/service_instances/other", _codes(400),
         body=lambda ids: {**_provision(ids), "plan_id": "no-such-plan"}, check=_error_body),
    Step("provision, malformed JSON", "PUT", "/v2/service_instances/other", _codes(400), body=lambda ids: "{",
         check=_error_body),
    Step("fetch instance", "GET", I, _codes(200),
         check=lambda b: isinstance(b, dict) and isinstance(b.get("service_id"), str) and isinstance(b.get("plan_id"), str)),
    Step("last_operation of a sync instance", "GET", I + "/last_operation" + DQ, _codes(200), check=_last_op),
    Step("bind", "PUT", B, _codes(201), body=_bind, check=_credentials),
    Step("bind repeated identically", "PUT", B, _codes(200), body=_bind, check=_credentials),
    Step("bind same id, other app", "PUT", B, _codes(409), body=lambda ids: _bind(ids, "other-app"), check=_error_body),
    Step("update plan", "PATCH", I, _codes(200),
         body=lambda ids: {"service_id": ids["service"], "plan_id": ids["plan_b"],
                           "previous_values": {"plan_id": ids["plan_a"], "service_id": ids["service"]}},
         check=lambda b: isinstance(b, dict) and "operation" not in b),
    Step("update with no changes", "PATCH", I, _codes(200),
         body=lambda ids: {"service_id": ids["service"], "plan_id": ids["plan_b"]}),
    Step("update, unknown instance (any non-2xx, non-5xx)", "PATCH", "/v2/service_instances/none", _codes(400, 404, 422),
         body=lambda ids: {"service_id": ids["service"], "plan_id": ids["plan_b"]}, check=_error_body),
    Step("bind, unknown instance (any non-2xx, non-5xx)", "PUT", "/v2/service_instances/none/service_bindings/x",
         _codes(400, 404, 422), body=_bind, check=_error_body),
    Step("unbind without plan_id (mandatory)", "DELETE", B + "?service_id={service}", _codes(400), check=_error_body),
    Step("unbind", "DELETE", B + DQ_B, _codes(200), check=lambda b: b == {}),
    Step("unbind again", "DELETE", B + DQ_B, _codes(410), check=_error_body),
    Step("binding last_operation after unbind", "GET", B + "/last_operation", _codes(404), check=_error_body),
    Step("deprovision without service_id (mandatory)", "DELETE", I + "?plan_id={plan_b}", _codes(400), check=_error_body),
    Step("deprovision", "DELETE", I + DQ_B, _codes(200), check=lambda b: b == {}),
    Step("deprovision again", "DELETE", I + DQ_B, _codes(410), check=_error_body),
    # 2.17: 404 MUST for an instance that does not exist; 410 is only for an asynchronous
    # delete that finished, and this broker's deletes are synchronous.
    Step("last_operation after delete", "GET", I + "/last_operation", _codes(404), check=_error_body),
    Step("GET deleted instance", "GET", I, _codes(404), check=_error_body),
    Step("unknown route", "GET", "/v2/nothing", _codes(404), check=_error_body),
]


def run_scenario(base: str) -> list[str]:
    session = requests.Session()
    session.auth = (USERNAME, PASSWORD)
    catalog = session.get(base + "/v2/catalog", headers={"X-Broker-API-Version": "2.17"}, timeout=10).json()
    service = catalog["services"][0]
    ids = {"service": service["id"], "plan_a": service["plans"][0]["id"], "plan_b": service["plans"][1]["id"],
           "iid": str(uuid.uuid4()), "bid": str(uuid.uuid4())}
    problems = []
    for step in SCENARIO:
        headers = {"X-Broker-API-Request-Identity": str(uuid.uuid4()), **dict(step.headers)}
        if step.version:
            headers["X-Broker-API-Version"] = step.version
        data = None
        if step.body is not None:
            payload = step.body(ids)
            data = payload if isinstance(payload, str) else json.dumps(payload)
            headers["Content-Type"] = "application/json"
        r = requests.request(step.method, base + step.path.format(**ids), data=data, headers=headers,
                             auth=(USERNAME, PASSWORD) if step.auth else None, timeout=10)
        if r.status_code not in step.allowed:
            problems.append(f"{step.name}: status {r.status_code}, spec allows {sorted(step.allowed)}: {r.text[:200]}")
            continue
        if not r.headers.get("Content-Type", "").startswith("application/json"):
            problems.append(f"{step.name}: Content-Type {r.headers.get('Content-Type')!r}, not JSON")
            continue
        if not step.check(r.json()):
            problems.append(f"{step.name}: body does not match the spec: {r.text[:200]}")
    session.close()
    return problems


def test_catalog_conforms(broker_url: str) -> None:
    r = requests.get(broker_url + "/v2/catalog", auth=(USERNAME, PASSWORD),
                     headers={"X-Broker-API-Version": "2.17"}, timeout=10)
    assert r.status_code == 200
    assert catalog_problems(r.json()) == []


@pytest.mark.parametrize("version", ["2.13", "2.14", "2.15", "2.16", "2.17"])
def test_supported_versions_are_accepted(broker_url: str, version: str) -> None:
    r = requests.get(broker_url + "/v2/catalog", auth=(USERNAME, PASSWORD),
                     headers={"X-Broker-API-Version": version}, timeout=10)
    assert r.status_code == 200


def test_scenario_conforms(broker_url: str) -> None:
    assert run_scenario(broker_url) == []
