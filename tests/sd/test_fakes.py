"""The fakes keep the real APIs' contracts (envelopes, pagination, errors) from cf-api.md and aiven-api.md."""

from __future__ import annotations

import requests

from sd.cloudfoundry import parse_instances_page
from tenant_metrics.fakes.aiven import FakeAiven
from tenant_metrics.fakes.cloudcontroller import FakeCloudController


def _token(cc: FakeCloudController) -> str:
    resp = requests.post(
        cc.url + "/uaa/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("tenant-metrics-sd", "sd-secret"),
        timeout=5,
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 0 and "refresh_token" not in body
    return str(body["access_token"])


def test_cc_pagination_fields_and_included(fake_cc: FakeCloudController) -> None:
    for i in range(5):
        fake_cc.add_owner(
            f"00000000-0000-4000-8000-00000000000{i}",
            f"inst-{i}",
            f"space-{i % 2}",
            f"s{i % 2}",
            "org-1",
            "the org",
        )
    headers = {"Authorization": f"bearer {_token(fake_cc)}"}
    params = {
        "per_page": "2",
        "fields[space]": "guid,name,relationships.organization",
        "fields[space.organization]": "guid,name",
    }
    first = requests.get(
        fake_cc.url + "/v3/service_instances", params=params, headers=headers, timeout=5
    ).json()
    assert first["pagination"]["total_results"] == 5 and first["pagination"]["total_pages"] == 3
    assert first["pagination"]["previous"] is None
    assert (
        "fields%5Bspace%5D=guid%2Cname%2Crelationships.organization"
        in first["pagination"]["next"]["href"]
    )
    assert first["included"]["organizations"] == [{"guid": "org-1", "name": "the org"}]
    seen, page, url = [], first, None
    while True:
        instances, url = parse_instances_page(page)
        seen += [i.guid for i in instances]
        if url is None:
            break
        page = requests.get(url, headers=headers, timeout=5).json()  # the href verbatim
    assert len(seen) == 5 and all(i.startswith("00000000") for i in seen)
    only_names = requests.get(
        fake_cc.url + "/v3/service_instances",
        headers=headers,
        timeout=5,
        params={"fields[space]": "name"},
    ).json()
    assert only_names["included"]["spaces"][0] == {"name": "s0"}  # only what was asked for


def test_cc_errors(fake_cc: FakeCloudController) -> None:
    url = fake_cc.url + "/v3/service_instances"
    assert requests.get(url, timeout=5).json()["errors"][0]["title"] == "CF-NotAuthenticated"
    bad = requests.get(url, headers={"Authorization": "bearer nope"}, timeout=5)
    assert bad.status_code == 401 and bad.json()["errors"][0]["code"] == 1000
    headers = {"Authorization": f"bearer {_token(fake_cc)}"}
    for params, detail in (
        ({"per_page": "5001"}, "Per page must be between 1 and 5000"),
        ({"fields[space]": "guid,secret"}, "Fields valid keys for 'space'"),
        ({"foo": "1"}, "Unknown query parameter(s): 'foo'"),
    ):
        resp = requests.get(url, params=params, headers=headers, timeout=5)
        assert (
            resp.status_code == 400 and resp.json()["errors"][0]["title"] == "CF-BadQueryParameter"
        )
        assert detail in resp.json()["errors"][0]["detail"]
    long = requests.get(
        url, params={"guids": ",".join(["x" * 36] * 250)}, headers=headers, timeout=5
    )
    assert long.status_code == 414 and long.headers["Content-Type"] == "text/html"
    wrong = requests.post(
        fake_cc.url + "/uaa/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("tenant-metrics-sd", "wrong"),
        timeout=5,
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
    assert "WWW-Authenticate" in wrong.headers
    root = requests.get(fake_cc.url + "/", timeout=5).json()
    assert root["links"]["uaa"]["href"] == fake_cc.url + "/uaa"


def test_aiven_errors_and_secrets(fake_aiven: FakeAiven) -> None:
    base = f"{fake_aiven.url}/v1/project/{fake_aiven.project}"
    denied = requests.get(base + "/service", headers={"Authorization": "aivenv1 nope"}, timeout=5)
    assert denied.status_code == 403 and denied.json()["errors"][0]["status"] == 403
    headers = {"Authorization": "Bearer aiven-test-token"}  # both schemes are accepted
    eps = requests.get(base + "/integration_endpoint", headers=headers, timeout=5).json()
    assert all(
        "basic_auth_password" not in e["user_config"] for e in eps["service_integration_endpoints"]
    )
    fake_aiven.add_fault("rate_limit", retry_after=5, header=False)
    limited = requests.get(base + "/service", headers=headers, timeout=5)
    assert limited.status_code == 429 and "Retry-After" not in limited.headers
    assert limited.json()["message"].endswith("Rate limit 120 exceeded - try again in 5s")
