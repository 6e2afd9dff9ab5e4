"""sd's own HTTP server: /metrics (its Prometheus metrics), /targets (http_sd), /healthz.

/targets and /metrics are behind ``Access`` (tenant_metrics/core/httpauth.py): 401 with
``WWW-Authenticate`` on a missing or wrong credential. /healthz stays open (Cloud Foundry's
health check carries no credentials) and shows only healthy or not, when the last good
cycle was and the age allowed: no targets, names or errors.
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from sd.writer import TargetsState
from tenant_metrics.core.errors import NotFound, Unauthenticated
from tenant_metrics.core.httpauth import Access

_PATHS = frozenset({"/metrics", "/targets", "/healthz"})


_COUNTERS: weakref.WeakKeyDictionary[CollectorRegistry, Counter] = weakref.WeakKeyDictionary()


def _requests_counter(registry: CollectorRegistry) -> Counter:
    """One counter per registry, however many servers are started on it (tests restart them)."""
    counter = _COUNTERS.get(registry)
    if counter is None:
        counter = _COUNTERS[registry] = Counter(
            "tenant_metrics_sd_http_requests_total",
            "Requests to sd's HTTP server, by path and status (401: a missing or wrong credential).",
            ["path", "code"],
            registry=registry,
        )
    return counter


class SdHttpServer:
    """``health()`` returns (healthy, details); /healthz answers 503 when unhealthy."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        state: TargetsState,
        health: Callable[[], tuple[bool, dict[str, object]]],
        *,
        targets_access: Access | None = None,
        metrics_access: Access | None = None,
    ) -> None:
        requests = _requests_counter(registry)
        handler = _handler(
            registry, state, health, targets_access or Access(), metrics_access or Access(), requests
        )
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="sd-http",
            daemon=True,
        )

    def start(self) -> SdHttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler(
    registry: CollectorRegistry,
    state: TargetsState,
    health: Callable[[], tuple[bool, dict[str, object]]],
    targets_access: Access,
    metrics_access: Access,
    requests: Counter,
) -> type[BaseHTTPRequestHandler]:
    guarded = {"/targets": targets_access, "/metrics": metrics_access}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def _send(self, status: int, body: bytes, ctype: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
            path = self.path.split("?", 1)[0]
            requests.labels(path if path in _PATHS else "other", str(status)).inc()
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, payload: object, headers: tuple[tuple[str, str], ...] = ()) -> None:
            self._send(status, json.dumps(payload).encode(), "application/json", headers)

        def _allowed(self, path: str) -> bool:
            access = guarded.get(path)
            if access is None:
                return True
            try:
                access.check(self.headers.get("Authorization"))
            except NotFound:
                self._json(404, {"status": "error", "error": "not found"})
                return False
            except Unauthenticated as exc:
                challenges = access.credentials.challenges() if access.credentials else []
                self._json(401, {"status": "error", "error": str(exc)},
                           tuple(("WWW-Authenticate", c) for c in challenges))
                return False
            return True

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if not self._allowed(path):
                return
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/targets":
                content = state.get()
                if (
                    content is None
                ):  # never an empty list before the first good cycle: Prometheus keeps its own
                    self._json(503, {"status": "error", "error": "no targets discovered yet"})
                else:
                    self._send(200, content, "application/json")
            elif path == "/healthz":
                healthy, details = health()
                self._json(
                    200 if healthy else 503, {"status": "ok" if healthy else "unhealthy", **details}
                )
            else:
                self._json(404, {"status": "error", "error": "not found"})

        do_HEAD = do_GET

        def do_POST(self) -> None:
            self._json(405, {"status": "error", "error": "method not allowed"})

    return Handler


def staleness_health(
    last_success: Callable[[], float | None],
    started: float,
    max_age: float,
    clock: Callable[[], float] = time.time,
) -> Callable[[], tuple[bool, dict[str, object]]]:
    """Healthy while the last good cycle is younger than ``max_age`` (or sd is just starting)."""

    def check() -> tuple[bool, dict[str, object]]:
        now = clock()
        last = last_success()
        reference = last if last is not None else started
        return now - reference <= max_age, {"last_success": last, "max_age_seconds": max_age}

    return check
