"""Sticky primary, failover and return of the primary, over real HTTP.

The fake Prometheus instances are real HTTP servers on loopback, in threads; the async
``Upstreams`` runs on an event loop of its own per test (``asyncio.run``).
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from werkzeug.serving import make_server

from gateway.metrics import GatewayMetrics
from gateway.upstream import Upstreams
from tenant_metrics.core.errors import UpstreamError, UpstreamTimeout
from tenant_metrics.world import free_port, serve_wsgi
from tests.gateway.support import RecordingUpstream

QUERY = [("query", "up")]
KEEPALIVE_BODY = b'{"status":"success","data":{"upstream":"keepalive"}}'


def _run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), timeout=30))


def _failovers(registry: CollectorRegistry, reason: str) -> float | None:
    return registry.get_sample_value("tenant_metrics_gateway_failovers_total", {"reason": reason})


async def _served_by(ups: Upstreams, method: str = "GET") -> str:
    answer = await ups.request(method, "/api/v1/query", QUERY)
    assert answer.status == 200
    return str(json.loads(await answer.read())["data"]["upstream"])


def test_sticky_failover_and_return_on_5xx() -> None:
    primary, secondary = RecordingUpstream("primary"), RecordingUpstream("secondary")
    registry = CollectorRegistry()

    async def body(p_url: str, s_url: str) -> None:
        ups = Upstreams([p_url, s_url], GatewayMetrics.create(registry), health_interval=3600)
        try:
            assert [await _served_by(ups) for _ in range(3)] == ["primary"] * 3
            assert registry.get_sample_value("tenant_metrics_gateway_upstream_active") == 0
            primary.fail_status = 503
            assert await _served_by(ups) == "secondary"
            assert ups.active == 1
            assert _failovers(registry, "http_503") == 1
            assert registry.get_sample_value("tenant_metrics_gateway_upstream_active") == 1
            primary.fail_status = None
            # Sticky: the primary is fine again, but only a health check brings it back.
            before = len(primary.paths())
            assert [await _served_by(ups) for _ in range(3)] == ["secondary"] * 3
            assert len(primary.paths()) == before  # not even tried
            await ups.check_health()
            assert await _served_by(ups) == "secondary"  # one good check is not enough
            await ups.check_health()
            assert ups.active == 0
            assert [await _served_by(ups) for _ in range(3)] == ["primary"] * 3
            assert registry.get_sample_value("tenant_metrics_gateway_upstream_active") == 0
            assert _failovers(registry, "http_503") == 1
            # The health check asked the primary's /-/ready, twice, and nobody else.
            ready = [r for r in primary.requests if r.path == "/-/ready"]
            assert len(ready) == 2
            assert ready[0].headers.get("User-Agent") == "tenant-metrics-gateway"
            assert [r for r in secondary.requests if r.path == "/-/ready"] == []
        finally:
            await ups.close()

    with serve_wsgi(primary) as p_url, serve_wsgi(secondary) as s_url:
        _run(lambda: body(p_url, s_url))


def test_query_errors_do_not_fail_over() -> None:
    primary, secondary = RecordingUpstream("primary"), RecordingUpstream("secondary")
    registry = CollectorRegistry()

    async def body(p_url: str, s_url: str) -> None:
        ups = Upstreams([p_url, s_url], GatewayMetrics.create(registry), health_interval=3600)
        try:
            primary.fail_status = 503
            primary.fail_body = (
                b'{"status":"error","errorType":"timeout","error":"query timed out"}'
            )
            answer = await ups.request("GET", "/api/v1/query", QUERY)
            assert answer.status == 503 and answer.instance == 0
            assert await answer.read() == primary.fail_body
            assert secondary.paths() == []
            assert ups.active == 0
            assert _failovers(registry, "http_503") is None
        finally:
            await ups.close()

    with serve_wsgi(primary) as p_url, serve_wsgi(secondary) as s_url:
        _run(lambda: body(p_url, s_url))


def test_connection_refused_fails_over_and_background_check_returns() -> None:
    secondary = RecordingUpstream("secondary")
    primary = RecordingUpstream("primary")
    dead_port = free_port()
    registry = CollectorRegistry()

    async def body(s_url: str) -> None:
        ups = Upstreams(
            [f"http://127.0.0.1:{dead_port}", s_url],
            GatewayMetrics.create(registry),
            connect_timeout=0.5,
            health_interval=0.1,
        )
        try:
            await ups.start()  # starts the background health check
            assert await _served_by(ups) == "secondary"
            assert ups.active == 1
            assert _failovers(registry, "connection") == 1
            # The background check keeps running while the primary is down: it stays away.
            await asyncio.sleep(0.5)
            assert ups.active == 1
            # Bring a server up on the primary's port; the background check returns to it.
            server = make_server("127.0.0.1", dead_port, primary, threaded=True)
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            try:
                deadline = time.monotonic() + 5
                while ups.active != 0 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)  # the event loop runs the check meanwhile
                assert ups.active == 0
                assert registry.get_sample_value("tenant_metrics_gateway_upstream_active") == 0
                assert len([r for r in primary.requests if r.path == "/-/ready"]) >= 2
                assert await _served_by(ups) == "primary"
            finally:
                server.shutdown()
                server.server_close()
                thread.join(timeout=5)
        finally:
            await ups.close()

    with serve_wsgi(secondary) as s_url:
        _run(lambda: body(s_url))


def test_all_down_raises_upstream_error() -> None:
    async def body() -> None:
        ups = Upstreams(
            [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"],
            GatewayMetrics.create(CollectorRegistry()),
            connect_timeout=0.5,
            health_interval=3600,
        )
        try:
            with pytest.raises(UpstreamError) as info:
                await ups.request("GET", "/api/v1/query", QUERY)
            assert not isinstance(info.value, UpstreamTimeout)
            assert str(info.value) == "no Prometheus instance is available"
        finally:
            await ups.close()

    _run(body)


def test_read_timeout_raises_upstream_timeout() -> None:
    def slow(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        time.sleep(1.0)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    async def body(url: str) -> None:
        metrics = GatewayMetrics.create(CollectorRegistry())
        ups = Upstreams([url], metrics, read_timeout=0.2, health_interval=3600)
        try:
            began = time.monotonic()
            with pytest.raises(UpstreamTimeout):
                await ups.request("GET", "/api/v1/query", QUERY)
            assert time.monotonic() - began < 0.9  # gave up at the read timeout, not the answer
        finally:
            await ups.close()

    with serve_wsgi(slow) as url:
        _run(lambda: body(url))


def test_last_upstream_5xx_is_passed_on() -> None:
    only = RecordingUpstream("only")
    only.fail_status = 500

    async def body(url: str) -> None:
        ups = Upstreams([url], GatewayMetrics.create(CollectorRegistry()), health_interval=3600)
        try:
            answer = await ups.request("GET", "/api/v1/query", QUERY)
            assert answer.status == 500 and answer.body is not None
            assert answer.instance == 0
            assert await answer.read() == only.fail_body
            assert len(only.paths()) == 1  # passed on, not retried
        finally:
            await ups.close()

    with serve_wsgi(only) as url:
        _run(lambda: body(url))


def _keepalive_server(
    close_after_each: bool, chunked: bool
) -> tuple[http.server.ThreadingHTTPServer, str, list[int]]:
    """A real HTTP/1.1 keep-alive server (Prometheus keeps connections open the same way).

    ``close_after_each`` closes every connection after one answer *without* saying so,
    as a server whose idle timeout expired does; ``chunked`` answers without a length.
    The list returned gets one entry per TCP connection accepted."""
    connections: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            connections.append(1)

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = KEEPALIVE_BODY
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for part in (body[:10], body[10:]):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            self.wfile.flush()
            if close_after_each:
                self.close_connection = True

        do_GET = do_POST

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, f"http://127.0.0.1:{server.server_address[1]}", connections


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_connections_are_kept_alive_and_reused(chunked: bool) -> None:
    server, url, connections = _keepalive_server(close_after_each=False, chunked=chunked)

    async def body() -> None:
        ups = Upstreams([url], GatewayMetrics.create(CollectorRegistry()), health_interval=3600)
        try:
            for _ in range(3):
                answer = await ups.request("POST", "/api/v1/query", QUERY)
                assert answer.status == 200
                assert b"".join([c async for c in answer.chunks()]) == KEEPALIVE_BODY
            assert await _served_by(ups) == "keepalive"
            assert len(connections) == 1  # one TCP connection served all four
        finally:
            await ups.close()

    try:
        _run(body)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("method", ["GET", "POST"])  # the proxy sends queries as POST
@pytest.mark.parametrize("loop_blocked", [False, True], ids=["close-seen", "close-unseen"])
def test_connection_closed_by_the_upstream_is_replaced_without_failover(
    loop_blocked: bool, method: str
) -> None:
    """``close-seen``: the event loop ran while the server closed, so the pool knows the
    connection is dead. ``close-unseen``: the loop was busy (a worker's loop often is), so
    the dead connection is taken from the pool and only found dead when used."""
    server, url, connections = _keepalive_server(close_after_each=True, chunked=False)
    registry = CollectorRegistry()

    async def body() -> None:
        ups = Upstreams(
            [url, "http://127.0.0.1:1"], GatewayMetrics.create(registry), health_interval=3600
        )
        try:
            for _ in range(3):
                assert await _served_by(ups, method) == "keepalive"
                if loop_blocked:
                    time.sleep(0.05)  # the server's close arrives, but the loop does not run
                else:
                    await asyncio.sleep(0.05)  # the server's close arrives and is seen
            assert len(connections) == 3
            assert ups.active == 0
            assert _failovers(registry, "connection") is None
        finally:
            await ups.close()

    try:
        _run(body)
    finally:
        server.shutdown()
        server.server_close()


class _Silent:
    """A TCP listener that completes handshakes (the kernel's backlog) and never answers:
    what a SIGSTOPped or GC-paused Prometheus looks like from outside."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()


def _slow_query_app(delay: float) -> Callable[..., Iterable[bytes]]:
    """Alive (answers /-/ready at once) but slow to evaluate a query, as Prometheus is."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["PATH_INFO"] != "/-/ready":
            time.sleep(delay)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"status":"success","data":{"upstream":"slow"}}']

    return app


def test_stalled_primary_fails_over_within_ttfb_and_probe() -> None:
    silent, secondary = _Silent(), RecordingUpstream("secondary")
    registry = CollectorRegistry()

    async def body(s_url: str) -> None:
        ups = Upstreams([silent.url, s_url], GatewayMetrics.create(registry), read_timeout=30,
                        health_interval=3600, ttfb_timeout=0.3, probe_timeout=0.3)
        try:
            began = time.monotonic()
            assert await _served_by(ups) == "secondary"
            assert time.monotonic() - began < 2  # ttfb + probe, not the 30 s read timeout
            assert ups.active == 1 and _failovers(registry, "stall") == 1
            assert [await _served_by(ups) for _ in range(3)] == ["secondary"] * 3  # sticky
            assert _failovers(registry, "stall") == 1
        finally:
            await ups.close()

    try:
        with serve_wsgi(secondary) as s_url:
            _run(lambda: body(s_url))
    finally:
        silent.close()


def test_slow_query_on_a_live_primary_is_waited_for() -> None:
    """Prometheus sends nothing before it has evaluated the query: a late first byte from
    an instance that answers its probe is a slow query, not a stall."""
    secondary = RecordingUpstream("secondary")
    registry = CollectorRegistry()

    async def body(p_url: str, s_url: str) -> None:
        ups = Upstreams([p_url, s_url], GatewayMetrics.create(registry), read_timeout=10,
                        health_interval=3600, ttfb_timeout=0.2, probe_timeout=0.5)
        try:
            assert await _served_by(ups) == "slow"
            assert ups.active == 0 and _failovers(registry, "stall") is None
            assert secondary.paths() == []
        finally:
            await ups.close()

    with serve_wsgi(_slow_query_app(1.0)) as p_url, serve_wsgi(secondary) as s_url:
        _run(lambda: body(p_url, s_url))


def test_health_check_probes_an_active_primary_and_fails_over_when_it_stalls() -> None:
    silent, secondary = _Silent(), RecordingUpstream("secondary")
    registry = CollectorRegistry()

    async def body(s_url: str) -> None:
        ups = Upstreams([silent.url, s_url], GatewayMetrics.create(registry), health_interval=3600,
                        probe_timeout=0.2)
        try:
            began = time.monotonic()
            await ups.check_health()
            assert time.monotonic() - began < 1.5
            assert ups.active == 1 and _failovers(registry, "probe") == 1
            assert await _served_by(ups) == "secondary"
        finally:
            await ups.close()

    try:
        with serve_wsgi(secondary) as s_url:
            _run(lambda: body(s_url))
    finally:
        silent.close()
