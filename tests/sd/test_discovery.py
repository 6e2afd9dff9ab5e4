"""Discovery cycles against fake Aiven and Cloud Controller servers and a real DB (both kinds)."""

from __future__ import annotations

import threading

from sqlalchemy import create_engine, select

from tenant_metrics.core import labels as L
from tenant_metrics.core.models import IntegrationAttempt, ServiceOwner
from tests.sd.conftest import ENDPOINT, PREFIX, Harness, fake_ips


def test_new_service_is_integrated_and_labelled_with_its_owner(harness: Harness) -> None:
    t = harness.tenant(name="orders-search", org="dept-of-examples", space="production")
    app = harness.app()

    report = app.discovery.run_cycle()

    assert report.ok, report.failures
    assert len(harness.aiven.integrations_for(t.aiven_name, ENDPOINT)) == 1
    assert harness.targets() == [
        {
            "targets": [f"{ip}:9273" for ip in fake_ips(harness.aiven.host_of(t.aiven_name))],
            "labels": {
                L.CF_ORGANIZATION_GUID: t.org_guid,
                L.CF_SPACE_GUID: t.space_guid,
                L.CF_SERVICE_INSTANCE_GUID: t.guid,
                L.CF_ORGANIZATION_NAME: "dept-of-examples",
                L.CF_SPACE_NAME: "production",
                L.CF_SERVICE_INSTANCE_NAME: "orders-search",
                L.AIVEN_SERVICE_NAME: t.aiven_name,
                L.AIVEN_SERVICE_TYPE: "opensearch",
                L.AIVEN_PLAN: "business-4",
                L.AIVEN_CLOUD: "aws-eu-west-2",
            },
        }
    ]
    reg = app.registry
    assert reg.get_sample_value("tenant_metrics_sd_integrations_created_total") == 1
    assert (
        reg.get_sample_value(
            "tenant_metrics_sd_services", {"type": "opensearch", "state": "RUNNING"}
        )
        == 1
    )
    assert reg.get_sample_value("tenant_metrics_sd_last_success_timestamp_seconds") > 0
    assert reg.get_sample_value("tenant_metrics_sd_cycles_total", {"result": "success"}) == 1
    # remembered in the DB
    engine = create_engine(harness.database_url)
    with engine.connect() as conn:
        row = conn.execute(
            select(ServiceOwner.__table__).where(
                ServiceOwner.__table__.c.service_instance_guid == t.guid
            )
        ).one()
    engine.dispose()
    assert (row.organization_name, row.space_name, row.missing) == (
        "dept-of-examples",
        "production",
        False,
    )


def test_steady_state_does_no_writes_no_integrations_and_no_cc_calls(harness: Harness) -> None:
    harness.tenant(integrated=True)
    app = harness.app()
    assert app.discovery.run_cycle().written
    cc_calls, aiven_posts = harness.cc.call_count("GET /v3"), harness.aiven.call_count("POST")
    inode = harness.targets_file.stat().st_ino

    report = app.discovery.run_cycle()

    assert report.ok and not report.written
    assert harness.targets_file.stat().st_ino == inode
    assert harness.cc.call_count("GET /v3") == cc_calls
    assert harness.aiven.call_count("POST") == aiven_posts == 0
    assert not list(harness.targets_file.parent.glob(".*.tmp"))


def test_deleted_service_loses_its_targets(harness: Harness) -> None:
    keep, gone = harness.tenant(integrated=True), harness.tenant(integrated=True)
    app = harness.app()
    app.discovery.run_cycle()
    assert set(harness.groups_by_service()) == {keep.aiven_name, gone.aiven_name}

    harness.aiven.delete_service(gone.aiven_name)
    assert app.discovery.run_cycle().ok

    assert set(harness.groups_by_service()) == {keep.aiven_name}


def test_renamed_org_shows_after_the_names_refresh(harness: Harness) -> None:
    t = harness.tenant(org="old-org-name", integrated=True)
    app = harness.app(SD_NAMES_REFRESH_SECONDS="600")
    app.discovery.run_cycle()
    harness.cc.rename_org(t.org_guid, "new-org-name")

    app.discovery.run_cycle()  # within the refresh interval: the remembered name
    assert (
        harness.groups_by_service()[t.aiven_name]["labels"][L.CF_ORGANIZATION_NAME]
        == "old-org-name"
    )

    harness.clock.advance(601)
    assert app.discovery.run_cycle().ok
    assert (
        harness.groups_by_service()[t.aiven_name]["labels"][L.CF_ORGANIZATION_NAME]
        == "new-org-name"
    )


def test_instance_deleted_in_cloud_controller_loses_its_targets(harness: Harness) -> None:
    t, other = harness.tenant(integrated=True), harness.tenant(integrated=True)
    app = harness.app(SD_NAMES_REFRESH_SECONDS="60")
    app.discovery.run_cycle()
    harness.cc.delete_instance(t.guid)
    harness.clock.advance(61)

    report = app.discovery.run_cycle()

    assert report.ok
    assert set(harness.groups_by_service()) == {other.aiven_name}
    assert app.registry.get_sample_value("tenant_metrics_sd_owners_missing") == 1


def test_service_moving_state(harness: Harness) -> None:
    t = harness.tenant(state="REBUILDING")
    app = harness.app()
    app.discovery.run_cycle()
    assert harness.aiven.integrations_for(t.aiven_name) == []  # not RUNNING: not integrated yet

    harness.aiven.set_state(t.aiven_name, "RUNNING")
    app.discovery.run_cycle()
    assert len(harness.aiven.integrations_for(t.aiven_name, ENDPOINT)) == 1
    assert t.aiven_name in harness.groups_by_service()

    harness.aiven.set_state(t.aiven_name, "POWEROFF")
    app.discovery.run_cycle()
    assert harness.targets() == []

    harness.aiven.set_state(t.aiven_name, "RUNNING")
    app.discovery.run_cycle()
    assert t.aiven_name in harness.groups_by_service()
    assert len(harness.aiven.integrations_for(t.aiven_name, ENDPOINT)) == 1


def test_integration_already_present_is_not_created_again(harness: Harness) -> None:
    t = harness.tenant(integrated=True)
    app = harness.app()
    app.discovery.run_cycle()
    app.discovery.run_cycle()
    assert harness.aiven.created_by == []
    assert harness.aiven.call_count("POST") == 0
    assert t.aiven_name in harness.groups_by_service()


def test_placeholders_other_endpoints_and_disabled_integrations_do_not_count(
    harness: Harness,
) -> None:
    harness.aiven.duplicates = "accept"  # so the disabled entry does not turn the create into a 409
    placeholder_only = (
        harness.tenant()
    )  # the fake lists null-id prometheus placeholders to every endpoint
    elsewhere = harness.tenant()
    harness.aiven.add_integration(elsewhere.aiven_name, "0ther000-0000-4000-8000-000000000000")
    disabled = harness.tenant()
    harness.aiven.add_integration(disabled.aiven_name, ENDPOINT, enabled=False)
    svc = harness.app().discovery.aiven.get_service(placeholder_only.aiven_name)
    assert any(
        i.id is None and i.dest_endpoint_id == ENDPOINT and i.integration_type == "prometheus"
        for i in svc.integrations
    )

    harness.app().discovery.run_cycle()

    for t in (placeholder_only, elsewhere, disabled):
        created = [
            i for i in harness.aiven.integrations_for(t.aiven_name, ENDPOINT) if i["enabled"]
        ]
        assert len(created) == 1, t.aiven_name


def test_ineligible_services_are_left_alone(harness: Harness) -> None:
    hobby = harness.tenant(plan="hobbyist")
    pg = harness.tenant(service_type="pg")
    harness.aiven.add_service("not-ours-at-all", "opensearch", tags={})
    app = harness.app()
    report = app.discovery.run_cycle()
    assert report.ok, report.failures
    assert harness.aiven.created_by == [("not-ours-at-all", harness.aiven.created_by[0][1])]
    assert harness.aiven.integrations_for(hobby.aiven_name) == []
    assert harness.aiven.integrations_for(pg.aiven_name) == []
    assert harness.targets() == []  # the unparsable name is integrated but never a tenant target
    assert app.registry.get_sample_value("tenant_metrics_sd_services_unparsed_names") == 1


def test_two_sd_processes_racing_create_exactly_one_integration_each(harness: Harness) -> None:
    harness.aiven.duplicates = "accept"  # the API does not dedupe: our lease and re-check must
    # A slow create widens the window between "re-read: not integrated" and "created".
    harness.aiven.add_fault("slow", count=-1, method="POST", seconds=0.05)
    tenants = [harness.tenant() for _ in range(12)]
    apps = [harness.app(holder="sd-a"), harness.app(holder="sd-b"), harness.app(holder="sd-c")]
    barrier = threading.Barrier(len(apps))
    errors: list[BaseException] = []

    def run(app: object) -> None:
        try:
            barrier.wait()
            for _ in range(3):
                app.discovery.run_cycle()  # type: ignore[attr-defined]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a,)) for a in apps]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors
    for t in tenants:
        assert len(harness.aiven.integrations_for(t.aiven_name, ENDPOINT)) == 1, t.aiven_name
    assert len(harness.aiven.created_by) == len(tenants)


def test_stale_listing_is_rechecked_before_creating(harness: Harness) -> None:
    harness.aiven.duplicates = "accept"
    t = harness.tenant()
    a, b = harness.app(holder="sd-a"), harness.app(holder="sd-b")
    stale = b.discovery.aiven.list_services()  # b lists before a integrates
    a.discovery.run_cycle()
    report = b.discovery.integrator.run(stale)
    assert report.created == () and report.backing_off == (
        t.aiven_name,
    )  # a's success is remembered
    # Even without that memory (a crashed before recording), b re-reads the service first.
    engine = create_engine(harness.database_url)
    with engine.begin() as conn:
        conn.execute(IntegrationAttempt.__table__.delete())
    engine.dispose()
    report = b.discovery.integrator.run(stale)
    assert report.already_present == (t.aiven_name,) and report.created == ()
    assert len(harness.aiven.integrations_for(t.aiven_name, ENDPOINT)) == 1


def test_failing_integration_backs_off_and_is_reported(harness: Harness) -> None:
    t = harness.tenant()
    harness.aiven.add_fault("error", count=-1, method="POST", status=500)
    app = harness.app()

    first = app.discovery.run_cycle()
    assert not first.ok and first.integrations is not None and first.integrations.failed
    assert harness.aiven.call_count("POST") == 1  # POST is never blindly repeated after a 5xx
    app.discovery.run_cycle()
    app.discovery.run_cycle()
    assert harness.aiven.call_count("POST") == 1  # backing off, not hot-looping
    assert app.registry.get_sample_value("tenant_metrics_sd_integrations_backing_off") == 1
    engine = create_engine(harness.database_url)
    with engine.connect() as conn:
        attempt = conn.execute(select(IntegrationAttempt.__table__)).one()
    engine.dispose()
    assert attempt.attempts == 1 and "500" in attempt.last_error

    harness.aiven.clear_faults()
    harness.clock.advance(61)
    assert app.discovery.run_cycle().ok
    assert len(harness.aiven.integrations_for(t.aiven_name, ENDPOINT)) == 1
    assert app.registry.get_sample_value("tenant_metrics_sd_integrations_failed_total") == 1


def test_integrations_are_bounded_per_cycle(harness: Harness) -> None:
    for _ in range(5):
        harness.tenant()
    app = harness.app(SD_MAX_INTEGRATIONS_PER_CYCLE="2")
    report = app.discovery.run_cycle()
    assert report.integrations is not None
    assert len(report.integrations.created) == 2 and report.integrations.deferred == 3
    assert len(harness.aiven.created_by) == 2
    app.discovery.run_cycle()
    app.discovery.run_cycle()
    assert len(harness.aiven.created_by) == 5


def test_tags_give_owner_guids_when_cloud_controller_is_down(harness: Harness) -> None:
    known = harness.tenant(name="known", integrated=True)
    app = harness.app()
    assert app.discovery.run_cycle().ok
    tagged = harness.tenant(name="tagged", integrated=True)
    untagged = harness.tenant(name="untagged", integrated=True, tags=False)
    harness.cc.add_fault("error", count=-1, path_contains="/v3/", status=503)

    report = app.discovery.run_cycle()

    assert not report.ok and report.failures[0].stage == "owners"
    groups = harness.groups_by_service()
    assert (
        groups[known.aiven_name]["labels"][L.CF_ORGANIZATION_NAME] == "dept-of-examples"
    )  # remembered
    assert (
        groups[tagged.aiven_name]["labels"][L.CF_ORGANIZATION_GUID] == tagged.org_guid
    )  # from the tags
    assert untagged.aiven_name not in groups  # never scraped without an owner
    assert app.registry.get_sample_value("tenant_metrics_sd_owners_unresolved") == 1
    assert (
        app.registry.get_sample_value(
            "tenant_metrics_sd_failures_total", {"stage": "owners", "kind": "server_error"}
        )
        == 1
    )

    harness.cc.clear_faults()
    assert app.discovery.run_cycle().ok
    groups = harness.groups_by_service()
    assert groups[untagged.aiven_name]["labels"][L.CF_SPACE_GUID] == untagged.space_guid
    assert groups[tagged.aiven_name]["labels"][L.CF_SERVICE_INSTANCE_NAME] == "tagged"


def test_dns_failure_keeps_the_previous_addresses(harness: Harness) -> None:
    t = harness.tenant(integrated=True)
    app = harness.app()
    app.discovery.run_cycle()
    before = harness.targets()
    harness.resolver.fail.add(harness.aiven.host_of(t.aiven_name))
    assert app.discovery.run_cycle().ok
    assert harness.targets() == before
    assert app.registry.get_sample_value("tenant_metrics_sd_dns_failures_total") == 1


def test_prefix_with_hyphens_and_other_names(harness: Harness) -> None:
    assert "-" in PREFIX
    t = harness.tenant(integrated=True)
    harness.aiven.add_service(f"{PREFIX}-not-a-guid", "opensearch")
    harness.aiven.add_service(f"prod-{t.guid}", "opensearch")  # a shorter prefix is not ours
    app = harness.app()
    app.discovery.run_cycle()
    assert set(harness.groups_by_service()) == {t.aiven_name}
    assert app.registry.get_sample_value("tenant_metrics_sd_services_unparsed_names") == 2
