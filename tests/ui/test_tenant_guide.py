"""docs/tenant-guide.md is true: its commands work as written, through the real broker and gateway.

A newcomer's path: the broker issues a service key (the OSB calls ``cf create-service``
and ``cf create-service-key`` make), and every ``curl`` and ``promtool`` line of the
guide, run by bash with the key's fields, answers with that tenant's data only.
The guide's numbers, fields and refused endpoints are checked against the code.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from broker.app import create_app as create_broker
from broker.config import (
    DEFAULT_ORG_PLAN_ID,
    DEFAULT_SERVICE_ID,
    DEFAULT_SERVICE_NAME,
    DEFAULT_SPACE_PLAN_ID,
    BrokerSettings,
)
from gateway.config import GatewaySettings
from gateway.policy import REFUSED_PREFIXES
from tenant_metrics.core.credentials import derive_key
from tests.support import serve_wsgi
from tests.ui.world import ORG_A, SERVICES, SPACE_A1, visible

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "tenant-guide.md"
OSB = {"X-Broker-API-Version": "2.17"}
CC_AUTH = ("cloud-controller", "cloud-controller-password-for-tests")


def _shell_lines() -> list[str]:
    """Every curl/promtool command in the guide's ``sh`` blocks."""
    text = GUIDE.read_text()
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            if line.startswith(("curl ", "promtool ")):
                lines.append(line)
    return lines


@pytest.fixture
def broker_url(database_url: str, gateway_url: str) -> Iterator[str]:
    settings = BrokerSettings(
        username=CC_AUTH[0], password=CC_AUTH[1],
        credentials_key=derive_key("tests-ui-broker-credentials-key"),
        database_url=database_url, gateway_public_url=gateway_url,
    )
    with serve_wsgi(create_broker(settings, configure_logging=False)) as url:
        yield url


def _service_key(broker_url: str) -> tuple[dict[str, str], str]:
    """cf create-service tenant-metrics space my-metrics; cf create-service-key my-metrics grafana."""
    instance, binding = str(uuid.uuid4()), str(uuid.uuid4())
    context = {"platform": "cloudfoundry", "organization_guid": ORG_A, "space_guid": SPACE_A1,
               "organization_name": "org-a", "space_name": "space-a1", "instance_name": "my-metrics"}
    resp = requests.put(f"{broker_url}/v2/service_instances/{instance}", auth=CC_AUTH, headers=OSB, timeout=10, json={
        "service_id": DEFAULT_SERVICE_ID, "plan_id": DEFAULT_SPACE_PLAN_ID,
        "organization_guid": ORG_A, "space_guid": SPACE_A1, "context": context})
    assert resp.status_code == 201, resp.text
    dashboard = resp.json()["dashboard_url"]
    resp = requests.put(f"{broker_url}/v2/service_instances/{instance}/service_bindings/{binding}", auth=CC_AUTH,
                        headers=OSB, timeout=10, json={"service_id": DEFAULT_SERVICE_ID, "plan_id": DEFAULT_SPACE_PLAN_ID,
                                                       "context": context})
    assert resp.status_code == 201, resp.text
    return resp.json()["credentials"], dashboard


@pytest.mark.e2e
def test_every_command_in_the_guide_works_as_written(broker_url: str, gateway_url: str) -> None:
    creds, dashboard = _service_key(broker_url)
    lines = _shell_lines()
    assert sum(line.startswith("curl ") for line in lines) >= 4
    assert sum(line.startswith("promtool ") for line in lines) >= 3
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TM_URL": creds["url"], "TM_USER": creds["username"],
           "TM_PASS": creds["password"], "TM_URI": creds["uri"]}
    own = {s.instance_name for s in visible("space", SPACE_A1)}
    others = {s.instance_name for s in SERVICES} - own
    for line in lines:
        run = subprocess.run(["bash", "-c", line], env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, f"{line}\n{run.stdout}\n{run.stderr}"
        assert run.stdout.strip(), line
        for name in others:
            assert f'"{name}"' not in run.stdout, f"{line} shows {name}"
    # The "dashboard:" line of `cf service` is the tenant page, behind the same credentials.
    assert dashboard == f"{gateway_url}/ui/"
    assert requests.get(dashboard, auth=(creds["username"], creds["password"]), timeout=10).status_code == 200


def test_the_credential_fields_it_describes_are_the_brokers() -> None:
    from broker.domain import InstanceRecord, binding_credentials
    from tenant_metrics.core import credentials
    from tenant_metrics.core.labels import Scope

    record = InstanceRecord("i", DEFAULT_SERVICE_ID, DEFAULT_SPACE_PLAN_ID, Scope.SPACE, "o", "s", None, None, None)
    fields = set(binding_credentials("https://m.example", record, credentials.issue(derive_key("x" * 16))))
    example = re.search(r"```json\n(\{.*?\})\n```", GUIDE.read_text(), re.S)
    assert example is not None
    assert set(re.findall(r'^\s*"(\w+)":', example.group(1), re.M)) == fields


def test_numbers_names_and_refusals_match_the_code() -> None:
    text = GUIDE.read_text()
    d = GatewaySettings(prometheus_urls=("http://x",), database_url="sqlite://")
    for number in (d.max_query_length, d.max_query_depth, d.max_query_operators, d.max_points,
                   int(d.rate_limit_per_second), d.rate_limit_burst, int(d.query_timeout_seconds)):
        assert str(number) in text, number
    assert f"({d.max_range_seconds // 86400} days)" in text
    assert f"cf create-service {DEFAULT_SERVICE_NAME} space" in text
    assert DEFAULT_SPACE_PLAN_ID != DEFAULT_ORG_PLAN_ID and "-p org" in text
    section = text.split("## 9.", 1)[1].split("## 10.", 1)[0]
    for prefix in REFUSED_PREFIXES:
        assert f"/api/v1/{prefix}" in section, prefix
