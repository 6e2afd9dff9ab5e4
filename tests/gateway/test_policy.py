"""Table tests of gateway/policy.py: refused paths and the headers that cross the gateway."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.policy import REFUSED_PREFIXES, relayed_headers, unrouted, upstream_headers
from tenant_metrics.core.errors import Forbidden, NotFound

# (the path after /api/v1/, the error message)
UNROUTED = [
    ("admin/tsdb/delete_series", "/api/v1/admin is not available through the tenant gateway"),
    ("read", "/api/v1/read is not available through the tenant gateway"),
    ("write", "/api/v1/write is not available through the tenant gateway"),
    ("otlp/v1/metrics", "/api/v1/otlp is not available through the tenant gateway"),
    ("status/config", "/api/v1/status is not available through the tenant gateway"),
    ("status/tsdb", "/api/v1/status is not available through the tenant gateway"),
    ("alertmanagers", "/api/v1/alertmanagers is not available through the tenant gateway"),
    ("targets/metadata", "/api/v1/targets/metadata is not available through the tenant gateway"),
    ("notifications/live", "/api/v1/notifications is not available through the tenant gateway"),
    ("format_query", "/api/v1/format_query is not available through the tenant gateway"),
    ("parse_query", "/api/v1/parse_query is not available through the tenant gateway"),
]


@pytest.mark.parametrize(("rest", "message"), UNROUTED)
def test_refused_paths_are_forbidden(rest: str, message: str) -> None:
    error = unrouted(rest)
    assert isinstance(error, Forbidden)
    assert str(error) == message


@pytest.mark.parametrize("rest", ["", "nothing", "querys", "Admin/tsdb", "x/admin/", "v2/query"])
def test_other_paths_are_not_found(rest: str) -> None:
    error = unrouted(rest)
    assert isinstance(error, NotFound) and not isinstance(error, Forbidden)
    assert str(error) == "unknown API endpoint"


def test_every_refused_prefix_is_refused() -> None:
    for prefix in REFUSED_PREFIXES:
        assert isinstance(unrouted(prefix), Forbidden), prefix


# (client's Accept-Encoding, scope_org_id setting, compressed, the upstream headers)
UPSTREAM = [
    ("gzip, deflate", None, True, {"Accept-Encoding": "gzip", "User-Agent": "tenant-metrics-gateway"}),
    ("GZIP", None, True, {"Accept-Encoding": "gzip", "User-Agent": "tenant-metrics-gateway"}),
    ("", None, True, {"Accept-Encoding": "identity", "User-Agent": "tenant-metrics-gateway"}),
    ("br, deflate", None, True, {"Accept-Encoding": "identity", "User-Agent": "tenant-metrics-gateway"}),
    # The gateway reads the body itself (filters): never compressed.
    ("gzip", None, False, {"Accept-Encoding": "identity", "User-Agent": "tenant-metrics-gateway"}),
    ("gzip", "", True, {"Accept-Encoding": "gzip", "User-Agent": "tenant-metrics-gateway"}),
    ("gzip", "tenant", True,
     {"Accept-Encoding": "gzip", "User-Agent": "tenant-metrics-gateway", "X-Scope-OrgID": "space-a"}),
    ("", "platform", False,
     {"Accept-Encoding": "identity", "User-Agent": "tenant-metrics-gateway", "X-Scope-OrgID": "platform"}),
]


@pytest.mark.parametrize(("accept", "scope_org_id", "compressed", "expected"), UPSTREAM)
def test_upstream_headers(accept: str, scope_org_id: str | None, compressed: bool, expected: dict[str, str]) -> None:
    assert upstream_headers(accept, scope_org_id, "space-a", compressed) == expected


def test_only_allowed_response_headers_are_relayed() -> None:
    sent = CIMultiDictProxy(CIMultiDict([
        ("content-type", "application/json"), ("Content-Encoding", "gzip"), ("Content-Length", "12"),
        ("Warning", "299 - x"), ("Set-Cookie", "a=b"), ("Server", "prometheus"), ("X-Scope-OrgID", "o"),
        ("Connection", "keep-alive"), ("Transfer-Encoding", "chunked"),
    ]))
    assert relayed_headers(sent) == {
        "Content-Type": "application/json", "Content-Encoding": "gzip", "Content-Length": "12", "Warning": "299 - x",
    }
    assert relayed_headers(CIMultiDictProxy(CIMultiDict())) == {}
