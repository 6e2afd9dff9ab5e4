"""Gateway test helpers: tenants in a real DB, and a recording upstream on real HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tenant_metrics.world import KEY, TenantCreds, add_tenant, revoke  # noqa: F401  (re-exported for the tests)


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


def _alert(space: str, org: str, state: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": "AivenSearchClusterRed", "audience": "tenant", "severity": "critical",
                   "cf_space_guid": space, "cf_organization_guid": org},
        "annotations": {"summary": f"{space}: search cluster is red"},
        "state": state, "activeAt": "2026-12-04T19:00:00Z", "value": "3e+00",
    }


# What Prometheus answers for /api/v1/rules?type=alert: one rule firing for space-a (org-1) and
# pending for space-b (org-2); a platform rule firing for space-a; a rule pinned to space-b.
RULES = {
    "status": "success",
    "data": {
        "groups": [
            {
                "name": "aiven-search-alerts",
                "file": "/etc/prometheus/rules/aiven-search-alerts.yml",
                "rules": [
                    {
                        "state": "firing", "name": "AivenSearchClusterRed",
                        "query": "max by (cf_space_guid, cf_organization_guid) (opensearch_cluster_health_status_code) >= 3",
                        "duration": 300, "labels": {"audience": "tenant", "severity": "critical"},
                        "annotations": {"summary": "{{ $labels.cf_space_guid }}: search cluster is red"},
                        "alerts": [_alert("space-a", "org-1", "firing"), _alert("space-b", "org-2", "pending")],
                        "health": "ok", "evaluationTime": 0.002, "lastEvaluation": "2026-12-04T19:05:00Z",
                        "type": "alerting",
                    },
                    {
                        "state": "firing", "name": "GatewayScrapeSlow", "query": "scrape_duration_seconds > 5",
                        "duration": 60, "labels": {"audience": "platform"}, "annotations": {"summary": "platform only"},
                        "alerts": [_alert("space-a", "org-1", "firing")],
                        "health": "ok", "evaluationTime": 0.001, "lastEvaluation": "2026-12-04T19:05:00Z",
                        "type": "alerting",
                    },
                    {
                        "state": "inactive", "name": "SpaceBSpecial", "query": 'up{cf_space_guid="space-b"} == 0',
                        "duration": 60, "labels": {"audience": "tenant"}, "annotations": {"summary": "space-b only"},
                        "alerts": [], "health": "ok", "evaluationTime": 0.001,
                        "lastEvaluation": "2026-12-04T19:05:00Z", "type": "alerting",
                    },
                ],
                "interval": 60, "limit": 0, "evaluationTime": 0.004, "lastEvaluation": "2026-12-04T19:05:00Z",
            },
        ],
    },
}


class RecordingUpstream:
    """A WSGI app that records every request and answers like Prometheus (canned data)."""

    def __init__(self, name: str = "primary") -> None:
        self.name = name
        self.requests: list[Recorded] = []
        self.fail_status: int | None = None
        self.fail_body: bytes = b'{"status":"error","errorType":"internal","error":"boom"}'
        self.rules: Any = RULES  # the /api/v1/rules answer (any JSON value, to test bad ones)
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
        elif rec.path == "/api/v1/rules":
            payload = self.rules
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
