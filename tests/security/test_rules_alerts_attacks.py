"""Attacks on /api/v1/rules and /api/v1/alerts: nothing of another tenant's rules leaks.

A real gateway (aiohttp, real HTTP, tenants in a real SQLite database) in front of an
upstream that answers /api/v1/rules as a Prometheus holding hostile rules would: rules of
three tenants (two in one org), a rule pinned to one tenant but marked ``audience: tenant``,
instances of one tenant carrying another's labels under a rule that names the first, a
platform rule, a recording rule, and a ``lastError`` quoting another tenant's series. Each
tenant probes with every parameter Prometheus reads; what it gets back must not contain any
other tenant's rule name, expression, annotation, ``for`` duration, state or GUID, and
probing for a name that exists must answer exactly like probing for one that does not.
(tests/e2e/test_alerts_e2e.py does the same with a real Prometheus evaluating real rules.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.config import GatewaySettings
from tenant_metrics.core import db
from tenant_metrics.world import serve_app, serve_wsgi
from tests.gateway.support import RecordingUpstream, TenantCreds, add_tenant

ORG_ONE, ORG_TWO = "0a0a0001-org-one", "0b0b0002-org-two"
ALPHA, AMBER, BRAVO = "5a5a-space-alpha", "5a5a-space-amber", "5b5b-space-bravo"
OWNER = {ALPHA: ORG_ONE, AMBER: ORG_ONE, BRAVO: ORG_TWO}


def _inst(space: str, state: str, secret: str, **labels: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": "x", "cf_space_guid": space, "cf_organization_guid": OWNER[space], **labels},
        "annotations": {"description": secret},
        "state": state, "activeAt": "2026-12-04T19:00:00Z", "value": "1e+00",
    }


def _rule(name: str, query: str, duration: int, labels: dict[str, str], annotation: str,
          alerts: list[Any], **extra: Any) -> dict[str, Any]:
    return {"state": "firing" if alerts else "inactive", "name": name, "query": query, "duration": duration,
            "labels": labels, "annotations": {"summary": annotation}, "alerts": alerts, "health": "ok",
            "evaluationTime": 0.5, "lastEvaluation": "2026-12-04T19:05:00Z", "type": "alerting", **extra}


SHARED = "max by (cf_space_guid, cf_organization_guid) (search_health) >= 3"
HOSTILE_GROUPS = [
    {"name": "shared", "file": "/rules/shared.yml", "interval": 60, "limit": 0, "evaluationTime": 0.9,
     "lastEvaluation": "2026-12-04T19:05:00Z", "rules": [
         _rule("SharedRed", SHARED, 300, {"audience": "tenant"}, "red: {{ $labels.cf_space_guid }}", [
             _inst(ALPHA, "firing", "alpha-instance-note"),
             _inst(AMBER, "pending", "amber-instance-note"),
             _inst(BRAVO, "firing", "bravo-instance-note"),
         ], lastError=f'found duplicate series for {{cf_space_guid="{BRAVO}"}}'),
         _rule("PlatformOnlyRule", "scrape_duration_seconds > 5", 1111, {"audience": "platform"},
               "platform-only-note", [_inst(ALPHA, "firing", "platform-instance-note")]),
         _rule("NoAudienceBravoOnly", "disk_used > 90", 7777, {}, "bravo-no-audience-note",
               [_inst(BRAVO, "pending", "bravo-pending-note")]),
         {"name": "bravo:secret:recorded", "query": f'sum(up{{cf_space_guid="{BRAVO}"}})', "labels": {},
          "health": "ok", "evaluationTime": 0.1, "lastEvaluation": "2026-12-04T19:05:00Z", "type": "recording"},
     ]},
    {"name": "bravo-team", "file": "/rules/bravo.yml", "interval": 30, "limit": 0, "evaluationTime": 0.2,
     "lastEvaluation": "2026-12-04T19:05:00Z", "rules": [
         # Pinned to bravo; its instances even carry alpha's labels: still bravo's rule only.
         _rule("BravoSecretRule", f'up{{cf_space_guid="{BRAVO}"}} == 0', 4242, {"audience": "tenant"},
               "bravo-secret-note", [_inst(ALPHA, "firing", "injected-into-alpha-note"),
                                     _inst(BRAVO, "firing", "bravo-own-note")]),
         _rule("AlphaAndBravoRule", f'up{{cf_space_guid=~"{ALPHA}|{BRAVO}"}} == 0', 5353, {"audience": "tenant"},
               "regex-names-both-note", [_inst(ALPHA, "firing", "regex-alpha-note")]),
         _rule("BravoStaticLabel", SHARED, 6464, {"audience": "tenant", "cf_space_guid": BRAVO},
               "bravo-static-note", []),
     ]},
]
HOSTILE = {"status": "success", "data": {"groups": HOSTILE_GROUPS}}

# Every text that belongs to each tenant's rules or instances and to no one else.
ALPHA_ONLY = {"alpha-instance-note"}
AMBER_ONLY = {AMBER, "amber-instance-note"}
BRAVO_ONLY = {BRAVO, ORG_TWO, "bravo-instance-note", "NoAudienceBravoOnly", "7777", "bravo-no-audience-note",
              "bravo-pending-note", "BravoSecretRule", "4242", "bravo-secret-note", "bravo-own-note",
              "/rules/bravo.yml", "bravo-team", "BravoStaticLabel", "6464", "bravo-static-note"}
NOBODY = {"PlatformOnlyRule", "1111", "platform-only-note", "platform-instance-note", "bravo:secret:recorded",
          "injected-into-alpha-note", "AlphaAndBravoRule", "5353", "regex-names-both-note", "regex-alpha-note",
          "duplicate series"}
FORBIDDEN = {
    "alpha": AMBER_ONLY | BRAVO_ONLY | NOBODY,
    "org1": BRAVO_ONLY | NOBODY,
    "bravo": ALPHA_ONLY | AMBER_ONLY | {ALPHA, ORG_ONE} | NOBODY,
}
PROBED_NAMES = ["SharedRed", "PlatformOnlyRule", "NoAudienceBravoOnly", "bravo:secret:recorded", "BravoSecretRule",
                "AlphaAndBravoRule", "BravoStaticLabel", "MadeUpRule"]
PROBES: list[list[tuple[str, str]]] = [
    [],
    [("type", "alert")],
    [("type", "record")],
    [("exclude_alerts", "true")],
    [("exclude_alerts", "false")],
    [("rule_group[]", "bravo-team")],
    [("rule_group[]", "shared"), ("rule_group[]", "bravo-team")],
    [("file[]", "/rules/bravo.yml")],
    [("file[]", "/rules/shared.yml"), ("type", "alert")],
    [("rule_name[]", name) for name in PROBED_NAMES],
    *([("rule_name[]", name)] for name in PROBED_NAMES),
    *([("rule_name[]", name), ("type", "record")] for name in PROBED_NAMES),
]


@pytest.fixture(scope="module")
def attack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, TenantCreds], RecordingUpstream]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('rules-attacks') / 'tm.sqlite3'}"
    db.upgrade(url)
    tenants = {
        "alpha": add_tenant(url, "space", ORG_ONE, ALPHA),
        "org1": add_tenant(url, "org", ORG_ONE, AMBER),
        "bravo": add_tenant(url, "space", ORG_TWO, BRAVO),
    }
    upstream = RecordingUpstream()
    upstream.rules = HOSTILE
    with serve_wsgi(upstream) as upstream_url:
        settings = GatewaySettings(prometheus_urls=(upstream_url,), database_url=url, health_check_seconds=0.2,
                                   rate_limit_burst=100000, rate_limit_per_second=100000.0)
        with serve_app(create_app(settings, CollectorRegistry())) as gateway:
            yield gateway, tenants, upstream


def _get(gateway: str, creds: TenantCreds, path: str, params: list[tuple[str, str]]) -> dict[str, Any]:
    resp = requests.get(gateway + path, params=params, auth=creds.auth, timeout=10)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    assert body["status"] == "success"
    return body


def _leaks(body: dict[str, Any], tenant: str) -> set[str]:
    text = json.dumps(body)
    return {secret for secret in FORBIDDEN[tenant] if secret in text}


@pytest.mark.parametrize("tenant", sorted(FORBIDDEN))
def test_no_probe_of_rules_or_alerts_shows_another_tenants_rules(attack, tenant: str) -> None:
    gateway, tenants, upstream = attack
    for probe in PROBES:
        upstream.requests.clear()
        for path in ("/api/v1/rules", "/api/v1/alerts"):
            body = _get(gateway, tenants[tenant], path, probe)
            assert _leaks(body, tenant) == set(), (path, probe)
        # Only the constant type=alert ever reaches Prometheus, whatever the tenant sent.
        assert {tuple(r.params()) for r in upstream.requests if r.path != "/-/ready"} == {(("type", "alert"),)}


# (tenant, a rule name it must not learn exists); bravo's own rules are bravo's to see.
NOT_THEIRS = [(tenant, name) for tenant in sorted(FORBIDDEN)
              for name in ("PlatformOnlyRule", "NoAudienceBravoOnly", "BravoSecretRule", "AlphaAndBravoRule",
                           "BravoStaticLabel", "bravo:secret:recorded")
              if not (tenant == "bravo" and name in ("NoAudienceBravoOnly", "BravoSecretRule", "BravoStaticLabel"))]


@pytest.mark.parametrize(("tenant", "probe"), NOT_THEIRS)
def test_probing_a_rule_name_answers_as_for_a_name_that_does_not_exist(attack, tenant: str, probe: str) -> None:
    gateway, tenants, _ = attack
    for extra in ([], [("type", "record")], [("exclude_alerts", "true")]):
        probed = _get(gateway, tenants[tenant], "/api/v1/rules", [("rule_name[]", probe), *extra])
        absent = _get(gateway, tenants[tenant], "/api/v1/rules", [("rule_name[]", "MadeUpRule"), *extra])
        assert probed == absent == {"status": "success", "data": {"groups": []}}


def _seen(body: dict[str, Any]) -> list[tuple[str, str, str, int, list[tuple[str, str]]]]:
    return [(g["name"], r["name"], r["state"], r["duration"],
             [(a["labels"]["cf_space_guid"], a["state"]) for a in r.get("alerts", [])])
            for g in body["data"]["groups"] for r in g["rules"]]


def test_each_tenant_sees_exactly_its_own(attack) -> None:
    gateway, tenants, _ = attack
    rules = {t: _seen(_get(gateway, c, "/api/v1/rules", [])) for t, c in tenants.items()}
    assert rules == {
        "alpha": [("shared", "SharedRed", "firing", 300, [(ALPHA, "firing")])],
        "org1": [("shared", "SharedRed", "firing", 300, [(ALPHA, "firing"), (AMBER, "pending")])],
        "bravo": [("shared", "SharedRed", "firing", 300, [(BRAVO, "firing")]),
                  ("shared", "NoAudienceBravoOnly", "pending", 7777, [(BRAVO, "pending")]),
                  ("bravo-team", "BravoSecretRule", "firing", 4242, [(BRAVO, "firing")]),
                  ("bravo-team", "BravoStaticLabel", "inactive", 6464, [])],
    }
    alerts = {t: [(a["labels"]["cf_space_guid"], a["annotations"]["description"])
                  for a in _get(gateway, c, "/api/v1/alerts", [])["data"]["alerts"]] for t, c in tenants.items()}
    assert alerts == {
        "alpha": [(ALPHA, "alpha-instance-note")],
        "org1": [(ALPHA, "alpha-instance-note"), (AMBER, "amber-instance-note")],
        "bravo": [(BRAVO, "bravo-instance-note"), (BRAVO, "bravo-pending-note"), (BRAVO, "bravo-own-note")],
    }


def test_the_state_of_a_shared_rule_is_the_tenants_own(attack) -> None:
    """SharedRed fires for alpha and bravo but is only pending for amber: amber's org
    sees firing (alpha is in it), and a space tenant only ever sees its own state."""
    gateway, tenants, upstream = attack
    only_amber = json.loads(json.dumps(HOSTILE))
    shared = only_amber["data"]["groups"][0]["rules"][0]
    shared["alerts"] = [a for a in shared["alerts"] if a["labels"]["cf_space_guid"] != ALPHA]
    upstream.rules = only_amber
    try:
        org1 = _get(gateway, tenants["org1"], "/api/v1/rules", [("rule_name[]", "SharedRed")])
        alpha = _get(gateway, tenants["alpha"], "/api/v1/rules", [("rule_name[]", "SharedRed")])
    finally:
        upstream.rules = HOSTILE
    assert _seen(org1) == [("shared", "SharedRed", "pending", 300, [(AMBER, "pending")])]
    # alpha has no instance now; SharedRed is audience: tenant, so alpha sees it inactive, empty.
    assert _seen(alpha) == [("shared", "SharedRed", "inactive", 300, [])]
