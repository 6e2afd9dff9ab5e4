"""Sticky primary, failover and return of the primary, over real HTTP."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry

from common.errors import UpstreamError, UpstreamTimeout
from gateway.metrics import GatewayMetrics
from gateway.upstream import Upstreams
from tests.gateway.support import RecordingUpstream
from tests.support import free_port, serve_wsgi


def _served_by(ups: Upstreams) -> str:
    answer = ups.request("GET", "/api/v1/query", [("query", "up")])
    import json

    return str(json.loads(answer.read())["data"]["upstream"])


def test_sticky_failover_and_return_on_5xx() -> None:
    primary, secondary = RecordingUpstream("primary"), RecordingUpstream("secondary")
    registry = CollectorRegistry()
    with serve_wsgi(primary) as p_url, serve_wsgi(secondary) as s_url:
        ups = Upstreams([p_url, s_url], GatewayMetrics.create(registry), health_interval=3600)
        try:
            assert [_served_by(ups) for _ in range(3)] == ["primary"] * 3
            primary.fail_status = 503
            assert _served_by(ups) == "secondary"
            assert registry.get_sample_value("tenant_metrics_gateway_failovers_total", {"reason": "http_503"}) == 1
            primary.fail_status = None
            # Sticky: the primary is fine again, but only a health check brings it back.
            assert [_served_by(ups) for _ in range(3)] == ["secondary"] * 3
            ups.check_health()
            assert _served_by(ups) == "secondary"  # one good check is not enough
            ups.check_health()
            assert [_served_by(ups) for _ in range(3)] == ["primary"] * 3
            assert registry.get_sample_value("tenant_metrics_gateway_upstream_active") == 0
        finally:
            ups.close()


def test_query_errors_do_not_fail_over() -> None:
    primary, secondary = RecordingUpstream("primary"), RecordingUpstream("secondary")
    with serve_wsgi(primary) as p_url, serve_wsgi(secondary) as s_url:
        ups = Upstreams([p_url, s_url], GatewayMetrics.create(CollectorRegistry()), health_interval=3600)
        try:
            primary.fail_status = 503
            primary.fail_body = b'{"status":"error","errorType":"timeout","error":"query timed out"}'
            answer = ups.request("GET", "/api/v1/query", [("query", "up")])
            assert answer.status == 503 and answer.instance == 0
            assert secondary.paths() == []
            assert ups.active == 0
        finally:
            ups.close()


def test_connection_refused_fails_over_and_background_check_returns() -> None:
    secondary = RecordingUpstream("secondary")
    primary = RecordingUpstream("primary")
    dead_port = free_port()
    with serve_wsgi(secondary) as s_url:
        ups = Upstreams(
            [f"http://127.0.0.1:{dead_port}", s_url],
            GatewayMetrics.create(CollectorRegistry()),
            connect_timeout=0.5,
            health_interval=0.1,
        )
        try:
            assert _served_by(ups) == "secondary"
            assert ups.active == 1
            # Bring a server up on the primary's port; the background check returns to it.
            import threading

            from werkzeug.serving import make_server

            server = make_server("127.0.0.1", dead_port, primary, threaded=True)
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            try:
                deadline = time.monotonic() + 5
                while ups.active != 0 and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert ups.active == 0
                assert _served_by(ups) == "primary"
            finally:
                server.shutdown()
                server.server_close()
        finally:
            ups.close()


def test_all_down_raises_upstream_error() -> None:
    ups = Upstreams(
        [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"],
        GatewayMetrics.create(CollectorRegistry()),
        connect_timeout=0.5,
        health_interval=3600,
    )
    try:
        with pytest.raises(UpstreamError):
            ups.request("GET", "/api/v1/query", [("query", "up")])
    finally:
        ups.close()


def test_read_timeout_raises_upstream_timeout() -> None:
    def slow(environ, start_response):  # type: ignore[no-untyped-def]
        time.sleep(1.0)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    with serve_wsgi(slow) as url:
        ups = Upstreams([url], GatewayMetrics.create(CollectorRegistry()), read_timeout=0.2, health_interval=3600)
        try:
            with pytest.raises(UpstreamTimeout):
                ups.request("GET", "/api/v1/query", [("query", "up")])
        finally:
            ups.close()


def test_last_upstream_5xx_is_passed_on() -> None:
    only = RecordingUpstream("only")
    only.fail_status = 500
    with serve_wsgi(only) as url:
        ups = Upstreams([url], GatewayMetrics.create(CollectorRegistry()), health_interval=3600)
        try:
            answer = ups.request("GET", "/api/v1/query", [("query", "up")])
            assert answer.status == 500 and answer.body is not None
        finally:
            ups.close()


def _keepalive_server(close_after_each: bool, chunked: bool):  # type: ignore[no-untyped-def]
    """A real HTTP/1.1 keep-alive server (Prometheus keeps connections open the same way).

    ``close_after_each`` closes every connection after one answer *without* saying so,
    as a server whose idle timeout expired does; ``chunked`` answers without a length."""
    import http.server
    import threading

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
            body = b'{"status":"success","data":{"upstream":"keepalive"}}'
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


@pytest.mark.parametrize("chunked", [False, True])
def test_connections_are_kept_alive_and_reused(chunked: bool) -> None:
    server, url, connections = _keepalive_server(close_after_each=False, chunked=chunked)
    ups = Upstreams([url], GatewayMetrics.create(CollectorRegistry()), health_interval=3600)
    try:
        for _ in range(3):
            answer = ups.request("POST", "/api/v1/query", [("query", "up")])
            assert b"".join(answer.stream(8)) == b'{"status":"success","data":{"upstream":"keepalive"}}'
        assert _served_by(ups) == "keepalive"
        assert len(connections) == 1
    finally:
        ups.close()
        server.shutdown()
        server.server_close()


def test_connection_closed_by_the_upstream_is_replaced_without_failover() -> None:
    server, url, connections = _keepalive_server(close_after_each=True, chunked=False)
    registry = CollectorRegistry()
    ups = Upstreams([url, "http://127.0.0.1:1"], GatewayMetrics.create(registry), health_interval=3600)
    try:
        for _ in range(3):
            assert _served_by(ups) == "keepalive"
            time.sleep(0.05)  # the server's close has arrived: the idle connection is seen dead
        assert len(connections) == 3
        assert ups.active == 0
        assert registry.get_sample_value("tenant_metrics_gateway_failovers_total", {"reason": "connection"}) is None
    finally:
        ups.close()
        server.shutdown()
        server.server_close()
