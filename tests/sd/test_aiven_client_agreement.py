"""aiven-client (Aiven's own client) and our thin client read the fake the same way.

This is the check that the fake speaks Aiven's shapes, not just our own assumptions: the
official client's paths, envelopes (``result_key``), auth header and error handling must
all work against it, and agree with what ``sd.aiven`` parses.
"""

from __future__ import annotations

import pytest
from aiven.client.client import AivenClient as OfficialClient
from aiven.client.client import Error as OfficialError

from sd.aiven import AivenClient
from tenant_metrics.fakes.aiven import FakeAiven
from tests.sd.conftest import ENDPOINT, TOKEN


@pytest.fixture
def official(fake_aiven: FakeAiven) -> OfficialClient:
    client = OfficialClient(fake_aiven.url, request_timeout=5)
    client.set_auth_token(TOKEN)
    return client


def test_both_clients_agree_on_services_and_integrations(
    fake_aiven: FakeAiven, official: OfficialClient
) -> None:
    fake_aiven.add_service("svc-a", "opensearch", tags={"organization_id": "o", "space_id": "s"})
    fake_aiven.add_service("svc-b", "elasticsearch", state="POWEROFF", plan="hobbyist")
    fake_aiven.add_integration("svc-a", ENDPOINT)
    ours = AivenClient(fake_aiven.url, TOKEN, fake_aiven.project)
    try:
        theirs = official.get_services(fake_aiven.project)
        mine = ours.list_services()
    finally:
        ours.close()
    assert [s["service_name"] for s in theirs] == [s.name for s in mine]
    for raw, parsed in zip(theirs, mine, strict=True):
        assert (raw["service_type"], raw["state"], raw["plan"], raw["cloud_name"]) == (
            parsed.type,
            parsed.state,
            parsed.plan,
            parsed.cloud,
        )
        assert raw["service_uri_params"]["host"] == parsed.host
        assert raw.get("tags", {}) == dict(parsed.tags)
        assert [
            i["service_integration_id"]
            for i in raw["service_integrations"]
            if i["integration_type"] == "prometheus"
        ] == [i.id for i in parsed.integrations]
    assert mine[0].has_prometheus_integration(ENDPOINT) and not mine[1].has_prometheus_integration(
        ENDPOINT
    )
    assert official.get_service(fake_aiven.project, "svc-a")["service_name"] == "svc-a"


def test_both_clients_agree_on_endpoint_create_and_errors(
    fake_aiven: FakeAiven, official: OfficialClient
) -> None:
    fake_aiven.add_service("svc-a", "opensearch")
    endpoint = official.get_service_integration_endpoint(
        project=fake_aiven.project, endpoint_id=ENDPOINT, include_secrets=True
    )
    ours = AivenClient(fake_aiven.url, TOKEN, fake_aiven.project)
    try:
        mine = ours.get_endpoint(ENDPOINT)
        assert (
            endpoint["endpoint_name"],
            endpoint["user_config"]["basic_auth_username"],
            endpoint["user_config"]["basic_auth_password"],
        ) == (mine.name, mine.username, mine.password)
        created = official.create_service_integration(
            project=fake_aiven.project,
            integration_type="prometheus",
            source_service="svc-a",
            dest_endpoint_id=ENDPOINT,
        )
        assert created["service_integration"]["source_service"] == "svc-a"
        with pytest.raises(
            OfficialError
        ) as err:  # aiven-client sends every key, with nulls: still a duplicate
            official.create_service_integration(
                project=fake_aiven.project,
                integration_type="prometheus",
                source_service="svc-a",
                dest_endpoint_id=ENDPOINT,
            )
        assert err.value.status == 409
        assert ours.get_service("svc-a").has_prometheus_integration(ENDPOINT)
        with pytest.raises(OfficialError) as missing:
            official.get_service(fake_aiven.project, "nope")
        assert missing.value.status == 404 and "Service nope does not exist" in str(missing.value)
        assert (
            official.get_project_ca(project=fake_aiven.project)["certificate"] == ours.project_ca()
        )
    finally:
        ours.close()
