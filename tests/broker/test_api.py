"""OSB semantics end to end: the broker on a real WSGI server, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.config import BrokerSettings
from broker.store import Store
from tenant_metrics.core import credentials
from tenant_metrics.core.db import make_engine
from tenant_metrics.core.models import AuditEvent, Binding, ServiceInstance
from tests.broker.conftest import Osb, identity_header


@pytest.fixture
def db(settings: BrokerSettings) -> Iterator[Session]:
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        yield session
    engine.dispose()


def _fresh(db: Session) -> Session:
    db.expire_all()
    db.rollback()
    return db


def test_provision_is_idempotent_and_conflicts_are_409(osb: Osb, db: Session) -> None:
    first = osb.provision("inst-1")
    assert first.status_code == 201, first.text
    assert first.json() == {"dashboard_url": "https://metrics.example.org/ui/"}
    again = osb.provision("inst-1")
    assert again.status_code == 200 and again.json() == first.json()
    other_plan = osb.provision("inst-1", osb.provision_body(plan=osb.org_plan))
    assert other_plan.status_code == 409 and "different attributes" in other_plan.json()["description"]
    other_space = osb.provision("inst-1", osb.provision_body(space="space-2"))
    assert other_space.status_code == 409
    assert len(_fresh(db).scalars(select(ServiceInstance)).all()) == 1


def test_provision_records_owner_names_and_scope(osb: Osb, db: Session) -> None:
    assert osb.provision("inst-1", osb.provision_body(plan=osb.org_plan, org="o-9", space="s-9")).status_code == 201
    row = _fresh(db).get(ServiceInstance, "inst-1")
    assert row is not None
    assert (row.organization_guid, row.space_guid, row.scope) == ("o-9", "s-9", "org")
    assert (row.organization_name, row.space_name, row.instance_name) == ("an-org", "a-space", "my-metrics")


def test_provision_takes_guids_from_top_level_fields_without_context(osb: Osb, db: Session) -> None:
    body = {"service_id": osb.service_id, "plan_id": osb.space_plan, "organization_guid": "o-top", "space_guid": "s-top"}
    assert osb.provision("inst-1", body).status_code == 201
    row = _fresh(db).get(ServiceInstance, "inst-1")
    assert row is not None and (row.organization_guid, row.space_guid) == ("o-top", "s-top")


def test_get_instance_and_unknown_instance(osb: Osb) -> None:
    osb.provision("inst-1")
    got = osb.request("GET", "/v2/service_instances/inst-1")
    assert got.status_code == 200
    assert got.json() == {
        "service_id": osb.service_id,
        "plan_id": osb.space_plan,
        "dashboard_url": "https://metrics.example.org/ui/",
        "parameters": {},
    }
    missing = osb.request("GET", "/v2/service_instances/nope")
    assert missing.status_code == 404 and "does not exist" in missing.json()["description"]


def test_update_plan_rescopes_every_binding(osb: Osb, db: Session) -> None:
    osb.provision("inst-1")
    first = osb.bind("inst-1", "bind-1").json()["credentials"]
    assert first["scope"] == "space" and first["scope_label"] == "cf_space_guid" and first["scope_guid"] == "space-1"
    osb.bind("inst-1", "key-1", osb.bind_body(app_guid=None))
    changed = osb.update("inst-1", {"service_id": osb.service_id, "plan_id": osb.org_plan,
                                    "previous_values": {"plan_id": osb.space_plan}})
    assert changed.status_code == 200, changed.text
    assert changed.json() == {"dashboard_url": "https://metrics.example.org/ui/"}
    s = _fresh(db)
    row = s.get(ServiceInstance, "inst-1")
    assert row is not None and (row.plan_id, row.scope) == (osb.org_plan, "org")
    assert {b.plan_id for b in s.scalars(select(Binding))} == {osb.org_plan}
    # A retried bind after the update is still identical, and reports the new scope.
    repeat = osb.bind("inst-1", "bind-1")
    assert repeat.status_code == 200
    assert repeat.json()["credentials"]["password"] == first["password"]
    assert repeat.json()["credentials"]["scope"] == "org"
    assert repeat.json()["credentials"]["scope_guid"] == "org-1"
    # And provisioning again with the new plan is now the identical request.
    assert osb.provision("inst-1", osb.provision_body(plan=osb.org_plan)).status_code == 200
    assert osb.provision("inst-1").status_code == 409


def test_update_follows_context_renames_and_refuses_moves(osb: Osb, db: Session) -> None:
    osb.provision("inst-1")
    renamed = osb.update("inst-1", {
        "service_id": osb.service_id,
        "context": {"platform": "cloudfoundry", "organization_guid": "org-1", "space_guid": "space-1",
                    "organization_name": "renamed-org", "space_name": "renamed-space", "instance_name": "new-name"},
    })
    assert renamed.status_code == 200, renamed.text
    row = _fresh(db).get(ServiceInstance, "inst-1")
    assert row is not None
    assert (row.organization_name, row.space_name, row.instance_name, row.scope) == (
        "renamed-org", "renamed-space", "new-name", "space")
    moved = osb.update("inst-1", {"service_id": osb.service_id,
                                  "context": {"organization_guid": "org-1", "space_guid": "elsewhere"}})
    assert moved.status_code == 400 and "cannot move" in moved.json()["description"]


def test_update_unknown_instance_is_404_not_500(osb: Osb) -> None:
    r = osb.update("nope", {"service_id": osb.service_id, "plan_id": osb.org_plan})
    assert r.status_code == 404 and "does not exist" in r.json()["description"]


def test_deprovision_removes_instance_and_revokes_bindings(osb: Osb, db: Session) -> None:
    osb.provision("inst-1")
    osb.bind("inst-1", "bind-1")
    osb.bind("inst-1", "bind-2", osb.bind_body(app_guid="app-2"))
    osb.provision("inst-2")
    osb.bind("inst-2", "bind-3")
    gone = osb.deprovision("inst-1")
    assert gone.status_code == 200 and gone.json() == {}
    s = _fresh(db)
    assert s.get(ServiceInstance, "inst-1") is None
    assert [b.id for b in s.scalars(select(Binding))] == ["bind-3"]
    again = osb.deprovision("inst-1")
    assert again.status_code == 410 and "does not exist" in again.json()["description"]
    assert osb.request("GET", "/v2/service_instances/inst-1").status_code == 404


def test_bind_issues_unique_verifiable_credentials_stored_only_as_hash(osb: Osb, db: Session) -> None:
    osb.provision("inst-1")
    r1 = osb.bind("inst-1", "bind-1")
    r2 = osb.bind("inst-1", "key-1", osb.bind_body(app_guid=None))
    assert r1.status_code == 201 and r2.status_code == 201
    c1, c2 = r1.json()["credentials"], r2.json()["credentials"]
    assert c1["username"] != c2["username"] and c1["password"] != c2["password"]
    assert len(c1["password"]) >= 40
    assert c1["uri"] == f"https://{c1['username']}:{c1['password']}@metrics.example.org"
    assert c1["url"] == c1["prometheus_url"] == "https://metrics.example.org"
    assert (c1["organization_guid"], c1["space_guid"], c1["service_instance_guid"]) == ("org-1", "space-1", "inst-1")
    s = _fresh(db)
    for creds, bid, kind in ((c1, "bind-1", "app"), (c2, "key-1", "key")):
        row = s.get(Binding, bid)
        assert row is not None and row.kind == kind and row.username == creds["username"]
        assert credentials.verify(creds["password"], row.password_sha256)
        assert not credentials.verify(creds["password"] + "x", row.password_sha256)
        stored = " ".join(str(getattr(row, col.key)) for col in Binding.__table__.columns)
        assert creds["password"] not in stored


def test_bind_repeat_returns_same_credentials_and_conflicts_are_409(osb: Osb) -> None:
    osb.provision("inst-1")
    osb.provision("inst-2")
    first = osb.bind("inst-1", "bind-1")
    again = osb.bind("inst-1", "bind-1")
    assert again.status_code == 200 and again.json() == first.json()
    other_app = osb.bind("inst-1", "bind-1", osb.bind_body(app_guid="app-2"))
    assert other_app.status_code == 409 and "different attributes" in other_app.json()["description"]
    other_instance = osb.bind("inst-2", "bind-1")
    assert other_instance.status_code == 409


def test_bind_to_unknown_instance_is_404_with_description(osb: Osb) -> None:
    r = osb.bind("nope", "bind-1")
    assert r.status_code == 404 and "does not exist" in r.json()["description"]


def test_unbind_revokes_and_repeats_are_410(osb: Osb, db: Session) -> None:
    osb.provision("inst-1")
    osb.provision("inst-2")
    osb.bind("inst-1", "bind-1")
    wrong_instance = osb.unbind("inst-2", "bind-1")
    assert wrong_instance.status_code == 410
    assert osb.unbind("inst-1", "bind-1").json() == {}
    assert _fresh(db).get(Binding, "bind-1") is None
    again = osb.unbind("inst-1", "bind-1")
    assert again.status_code == 410 and "does not exist" in again.json()["description"]
    # The id is free again: a new bind gets new credentials.
    assert osb.bind("inst-1", "bind-1").status_code == 201


def test_last_operation_endpoints(osb: Osb) -> None:
    osb.provision("inst-1")
    osb.bind("inst-1", "bind-1")
    op = osb.request("GET", "/v2/service_instances/inst-1/last_operation")
    assert op.status_code == 200 and op.json()["state"] == "succeeded"
    bop = osb.request("GET", "/v2/service_instances/inst-1/service_bindings/bind-1/last_operation")
    assert bop.status_code == 200 and bop.json()["state"] == "succeeded"


def test_last_operation_of_unknown_instance_or_binding_is_404(osb: Osb) -> None:
    """OSB 2.17: 404 MUST for what does not exist; 410 only ends an asynchronous delete,
    and ours are synchronous, so a deleted instance or binding is unknown too."""
    osb.provision("inst-1")
    osb.provision("inst-2")
    osb.bind("inst-1", "bind-1")
    unknown = [
        "/v2/service_instances/nope/last_operation",
        "/v2/service_instances/inst-1/service_bindings/nope/last_operation",
        "/v2/service_instances/inst-2/service_bindings/bind-1/last_operation",  # another instance's binding
        "/v2/service_instances/nope/service_bindings/bind-1/last_operation",
    ]
    assert osb.unbind("inst-1", "bind-1").status_code == 200
    unknown.append("/v2/service_instances/inst-1/service_bindings/bind-1/last_operation")
    assert osb.deprovision("inst-1").status_code == 200
    unknown.append("/v2/service_instances/inst-1/last_operation")
    for path in unknown:
        r = osb.request("GET", path)
        assert r.status_code == 404, (path, r.text)
        assert "does not exist" in r.json()["description"]


def test_maintenance_info_without_a_version_counts_as_absent(osb: Osb) -> None:
    empty: dict[str, Any] = {"maintenance_info": {}}
    assert osb.provision("inst-1", osb.provision_body(**empty)).status_code == 201
    assert osb.provision("inst-1", osb.provision_body(maintenance_info={"description": "x"})).status_code == 200
    assert osb.update("inst-1", {"service_id": osb.service_id, "plan_id": osb.org_plan, **empty}).status_code == 200
    assert osb.bind("inst-1", "bind-1", {**osb.bind_body(plan=osb.org_plan), **empty}).status_code == 201
    # A version is still refused: our plans declare none.
    versioned = osb.update("inst-1", {"service_id": osb.service_id, "maintenance_info": {"version": "2.0.0"}})
    assert versioned.status_code == 422 and versioned.json()["error"] == "MaintenanceInfoConflict"


def test_bindings_are_not_retrievable(osb: Osb) -> None:
    osb.provision("inst-1")
    osb.bind("inst-1", "bind-1")
    known = osb.request("GET", "/v2/service_instances/inst-1/service_bindings/bind-1")
    assert known.status_code == 501 and "bindings_retrievable" in known.json()["description"]
    assert "password" not in known.text
    unknown = osb.request("GET", "/v2/service_instances/inst-1/service_bindings/nope")
    assert unknown.status_code == 404 and unknown.json()["description"]


def test_every_change_is_audited_with_originating_and_request_identity(osb: Osb, db: Session) -> None:
    def call(action: str, user: str) -> dict[str, str]:
        return osb.headers(**{"X-Broker-API-Originating-Identity": identity_header(user),
                              "X-Broker-API-Request-Identity": f"req-{action}"})

    osb.provision("inst-1", headers=call("provision", "u-1"))
    osb.bind("inst-1", "bind-1", headers=call("bind", "u-2"))
    osb.update("inst-1", {"service_id": osb.service_id, "plan_id": osb.org_plan}, headers=call("update", "u-3"))
    osb.unbind("inst-1", "bind-1", plan=osb.org_plan, headers=call("unbind", "u-4"))
    osb.deprovision("inst-1", plan=osb.org_plan, headers=call("deprovision", "u-5"))
    events = _fresh(db).scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    assert [(e.action, e.user_id, e.request_id, e.platform) for e in events] == [
        ("provision", "u-1", "req-provision", "cloudfoundry"),
        ("bind", "u-2", "req-bind", "cloudfoundry"),
        ("update", "u-3", "req-update", "cloudfoundry"),
        ("unbind", "u-4", "req-unbind", "cloudfoundry"),
        ("deprovision", "u-5", "req-deprovision", "cloudfoundry"),
    ]
    assert events[2].details["rescoped_bindings"] == ["bind-1"]


def test_identical_repeats_write_no_audit_event(osb: Osb, settings: BrokerSettings) -> None:
    osb.provision("inst-1")
    osb.provision("inst-1")
    osb.bind("inst-1", "bind-1")
    osb.bind("inst-1", "bind-1")
    store = Store(make_engine(settings.database_url))
    try:
        assert [e["action"] for e in store.audit_events("inst-1")] == ["provision", "bind"]
    finally:
        store.engine.dispose()


def test_request_identity_is_echoed(osb: Osb) -> None:
    r = osb.request("GET", "/v2/catalog", headers=osb.headers(**{"X-Broker-API-Request-Identity": "abc-123"}))
    assert r.headers["X-Broker-API-Request-Identity"] == "abc-123"


def test_repeat_bind_after_a_key_rotation_returns_working_credentials(
    osb: Osb, settings: BrokerSettings, db: Session
) -> None:
    from dataclasses import replace

    from prometheus_client import CollectorRegistry

    from broker.app import create_app
    from tenant_metrics.core.credentials import derive_key
    from tests.support import serve_wsgi

    osb.provision("inst-1")
    before = osb.bind("inst-1", "bind-1").json()["credentials"]
    rotated = replace(settings, credentials_key=derive_key("a-brand-new-credentials-key"))
    app = create_app(rotated, registry=CollectorRegistry(), configure_logging=False)
    with serve_wsgi(app) as base:
        after = Osb(base, rotated).bind("inst-1", "bind-1")
    app.extensions["tenant_metrics_broker"].store.engine.dispose()
    assert after.status_code == 200
    creds = after.json()["credentials"]
    assert creds["username"] == before["username"] and creds["password"] != before["password"]
    row = _fresh(db).get(Binding, "bind-1")
    assert row is not None and credentials.verify(creds["password"], row.password_sha256)
    assert not credentials.verify(before["password"], row.password_sha256)


def test_nul_bytes_are_400_not_a_database_error(osb: Osb) -> None:
    # PostgreSQL text cannot hold NUL: it must never get that far.
    r = osb.provision("inst%00x")
    assert r.status_code == 400 and "control characters" in r.json()["description"]
    r = osb.provision("inst-1", osb.provision_body(space="s\x00"))
    assert r.status_code == 400
    osb.provision("inst-1")
    assert osb.request("GET", "/v2/service_instances/inst-1%00").status_code == 400
    assert osb.unbind("inst-1", "b%00").status_code == 400
