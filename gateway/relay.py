"""Send a rebuilt request to Prometheus and give its answer back to the client.

Two ways back: ``relay`` streams the upstream body to the client as it arrives, byte for
byte (gzip untouched, so Content-Length stays right), and ``fetch_json`` reads a whole
answer, decompressed, for a route that filters it (filters.py) before answering.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from gateway.auth import Tenant
from gateway.policy import relayed_headers, upstream_headers
from gateway.upstream import UpstreamResponse, Upstreams
from tenant_metrics.core.errors import UpstreamError

log = logging.getLogger("gateway")

TENANT = web.RequestKey("tenant", Tenant)  # set by the app's middleware once authenticated
UPSTREAM_INDEX = web.RequestKey("upstream_index", int)  # which instance answered (for the log)
CUT_SHORT = web.RequestKey("cut_short", bool)  # the answer was cut short after its status


class Relay:
    """The upstream side of every route; paths and parameters come rebuilt from the route."""

    def __init__(self, upstreams: Upstreams, scope_org_id: str | None, timeout_seconds: float) -> None:
        self.upstreams = upstreams
        self.scope_org_id = scope_org_id
        self.timeout_seconds = timeout_seconds

    async def forward(self, request: web.Request, path: str, params: list[tuple[str, str]],
                      method: str = "POST", compressed: bool = True) -> UpstreamResponse:
        """Query endpoints are always POSTed upstream, whatever the client used: a form body
        has no length limit, unlike a URL (Prometheus, or a proxy in front of it, may cap the
        request line). Endpoints that only take GET pass ``method="GET"``."""
        headers = upstream_headers(request.headers.get("Accept-Encoding", ""), self.scope_org_id,
                                   request[TENANT].value, compressed)
        answer = await self.upstreams.request(method, path, params, headers=headers,
                                              timeout=self.timeout_seconds)
        request[UPSTREAM_INDEX] = answer.instance
        return answer

    async def relay(self, request: web.Request, path: str, params: list[tuple[str, str]],
                    method: str = "POST") -> web.StreamResponse:
        """Stream the upstream's body as it arrives, compression untouched."""
        answer = await self.forward(request, path, params, method)
        headers = relayed_headers(answer.headers)
        if request.method == "HEAD":
            # No body may follow a HEAD answer (a streamed one would be sent: aiohttp drops
            # only a plain Response's), or the connection's next answer would start with it.
            answer.close()
            headers.pop("Content-Length", None)
            return web.Response(status=answer.status, headers=headers)
        if answer.body is not None:
            answer.close()
            return web.Response(body=answer.body, status=answer.status, headers=headers)
        resp = web.StreamResponse(status=answer.status, headers=headers)
        try:
            await resp.prepare(request)
            async for chunk in answer.chunks():
                await resp.write(chunk)
            await resp.write_eof()
        except OSError as exc:
            # Cut short after the status was sent: the client went away, or the upstream
            # failed. The connection is dropped, so the client sees an incomplete answer,
            # never one that looks complete (a chunked answer's end marker is not sent).
            if not isinstance(exc, ConnectionResetError):
                log.warning("upstream answer cut short",
                            extra={"upstream": answer.instance, "error": str(exc)})
            request[CUT_SHORT] = True
            if request.transport is not None:
                request.transport.abort()
        finally:
            answer.close()
        return resp

    async def fetch_json(self, request: web.Request, path: str, params: list[tuple[str, str]]) -> Any:
        """A whole upstream JSON answer (GET, uncompressed) for filtering; None if it was
        not a 200. Anything but Prometheus's success envelope is an UpstreamError."""
        answer = await self.forward(request, path, params, method="GET", compressed=False)
        if answer.status != 200:
            answer.close()
            return None
        try:
            data = json.loads(await answer.read())
        except (ValueError, OSError) as exc:
            raise UpstreamError("Prometheus sent a response that is not JSON") from exc
        if not isinstance(data, dict) or data.get("status") != "success":
            raise UpstreamError("Prometheus sent an unexpected response")
        return data


def success(data: Any) -> web.Response:
    """An answer the gateway writes itself, in Prometheus's success envelope."""
    return web.Response(
        body=json.dumps({"status": "success", "data": data}, separators=(",", ":")).encode(),
        status=200,
        content_type="application/json",
    )
