"""What the gateway refuses, and which headers cross it in each direction.

Pure: no I/O, no aiohttp. The relay (relay.py) applies the header rules, the catch-all
route (proxy.py) the refused paths.
"""

from __future__ import annotations

from collections.abc import Mapping

from tenant_metrics.core.errors import Forbidden, NotFound

# Paths Prometheus serves that the gateway refuses: each could read or change data
# across tenants (admin, remote read/write, OTLP), or shows the server's internals
# (config may hold credentials; flags, TSDB status and runtime info list other tenants'
# label values and cardinalities).
REFUSED_PREFIXES = (
    "admin/",
    "read",
    "write",
    "otlp/",
    "status/",
    "alertmanagers",
    "targets/metadata",
    "notifications",
    "format_query",
    "parse_query",
)

# Response headers relayed from Prometheus; everything else (Set-Cookie, Server, ...) is not.
# Content-Length is right because the body is relayed byte for byte (never decompressed).
RELAYED_HEADERS = ("Content-Type", "Content-Encoding", "Content-Length", "Warning")

USER_AGENT = "tenant-metrics-gateway"


def unrouted(rest: str) -> Forbidden | NotFound:
    """The error for ``/api/v1/<rest>`` that no route serves: 403 if refused, else 404."""
    prefix = next((p for p in REFUSED_PREFIXES if rest.startswith(p)), None)
    if prefix is not None:
        return Forbidden(f"/api/v1/{prefix.rstrip('/')} is not available through the tenant gateway")
    return NotFound("unknown API endpoint")


def upstream_headers(accept_encoding: str, scope_org_id: str | None, tenant_value: str,
                     compressed: bool = True) -> dict[str, str]:
    """The upstream request's headers, built from scratch: no client header (X-Scope-OrgID,
    Cookie, Authorization, ...) is forwarded. gzip is asked for only if the client accepts
    it (the body is relayed still compressed) and ``compressed`` (the gateway reads it)."""
    headers = {
        "Accept-Encoding": "gzip" if compressed and "gzip" in accept_encoding.lower() else "identity",
        "User-Agent": USER_AGENT,
    }
    if scope_org_id == "tenant":
        headers["X-Scope-OrgID"] = tenant_value
    elif scope_org_id:
        headers["X-Scope-OrgID"] = scope_org_id
    return headers


def relayed_headers(upstream: Mapping[str, str]) -> dict[str, str]:
    """The upstream answer's headers that reach the client (``upstream`` is case-insensitive)."""
    return {k: v for k in RELAYED_HEADERS if (v := upstream.get(k)) is not None}
