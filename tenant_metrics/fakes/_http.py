"""The plumbing the fake API servers share: a threaded HTTP server on loopback, call counts
and switchable faults (5xx, 429, slow answers, cut-off bodies) like the real APIs show."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


class FaultKind(StrEnum):
    ERROR = "error"  # an HTTP error status (default 500, with an HTML body like a load balancer)
    RATE_LIMIT = "rate_limit"  # 429 with the API's own body, Retry-After optional
    SLOW = "slow"  # sleep before answering (to trip client timeouts)
    TRUNCATE = "truncate"  # promise Content-Length, send half, close the connection
    INVALID_JSON = "invalid_json"  # a complete response whose JSON body is cut short


@dataclass(slots=True)
class Fault:
    kind: FaultKind
    remaining: int
    path_contains: str | None = None
    method: str | None = None
    status: int = 500
    seconds: float = 0.0
    retry_after: float | None = None
    header: bool = True


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    raw_path: str

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def q(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(
        cls,
        status: int,
        payload: Any,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        return cls(status, json.dumps(payload).encode(), content_type, headers or {})


class FakeServer:
    """Base class: subclasses implement ``route(request) -> Reply`` and ``rate_limit_reply``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.lock = threading.RLock()
        self.calls: Counter[str] = Counter()
        self._faults: list[Fault] = []
        self._host, self._port = host, port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> Self:
        server = ThreadingHTTPServer((self._host, self._port), _make_handler(self))
        server.daemon_threads = True
        self._server = server
        self.url = f"http://{self._host}:{server.server_address[1]}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> Self:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults ---------------------------------------------------------------------------
    def add_fault(
        self,
        kind: FaultKind | str,
        count: int = 1,
        *,
        path_contains: str | None = None,
        method: str | None = None,
        status: int = 500,
        seconds: float = 0.0,
        retry_after: float | None = None,
        header: bool = True,
    ) -> None:
        """Make the next ``count`` matching requests fail this way (count=-1: until cleared)."""
        with self.lock:
            self._faults.append(
                Fault(
                    FaultKind(kind),
                    count,
                    path_contains,
                    method,
                    status,
                    seconds,
                    retry_after,
                    header,
                )
            )

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def _take_fault(self, req: Request) -> Fault | None:
        with self.lock:
            for fault in self._faults:
                if fault.remaining == 0:
                    continue
                if fault.path_contains and fault.path_contains not in req.path:
                    continue
                if fault.method and fault.method != req.method:
                    continue
                if fault.remaining > 0:
                    fault.remaining -= 1
                return fault
        return None

    def call_count(self, prefix: str = "") -> int:
        with self.lock:
            return sum(n for key, n in self.calls.items() if key.startswith(prefix))

    # -- to implement ---------------------------------------------------------------------
    def route(self, req: Request) -> Reply:  # pragma: no cover - abstract
        raise NotImplementedError

    def call_key(self, req: Request) -> str:
        return f"{req.method} {req.path}"

    def rate_limit_reply(self, fault: Fault) -> Reply:
        return Reply.json(429, {"message": "Too many requests"})

    def admin(self, req: Request) -> Reply | None:
        """``/_fake/calls``: call counts, so a benchmark in another process can read them."""
        if req.path == "/_fake/calls":
            with self.lock:
                return Reply.json(200, dict(self.calls))
        if req.path == "/_fake/reset-calls" and req.method == "POST":
            with self.lock:
                self.calls.clear()
            return Reply.json(200, {})
        return None


def _make_handler(fake: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def _handle(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            req = Request(
                self.command,
                split.path,
                parse_qs(split.query, keep_blank_values=True),
                {k.lower(): v for k, v in self.headers.items()},
                body,
                self.path,
            )
            admin = fake.admin(req) if req.path.startswith("/_fake/") else None
            if admin is not None:
                self._send(admin)
                return
            with fake.lock:
                fake.calls[fake.call_key(req)] += 1
            fault = fake._take_fault(req)
            if fault is not None:
                if fault.kind is FaultKind.SLOW:
                    time.sleep(fault.seconds)
                elif fault.kind is FaultKind.ERROR:
                    page = (
                        f"<html><body><h1>{fault.status} Server Error</h1></body></html>".encode()
                    )
                    self._send(Reply(fault.status, page, "text/html"))
                    return
                elif fault.kind is FaultKind.RATE_LIMIT:
                    self._send(fake.rate_limit_reply(fault))
                    return
            try:
                reply = fake.route(req)
            except Exception as exc:  # noqa: BLE001 - a bug in the fake must show as a 500, not hang the client
                reply = Reply.json(500, {"message": f"fake server error: {exc!r}"})
            if fault is not None and fault.kind is FaultKind.TRUNCATE:
                self._send_truncated(reply)
                return
            if fault is not None and fault.kind is FaultKind.INVALID_JSON:
                reply = Reply(
                    reply.status,
                    reply.body[: max(1, len(reply.body) // 2)],
                    reply.content_type,
                    reply.headers,
                )
            self._send(reply)

        def _send(self, reply: Reply) -> None:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(reply.body)

        def _send_truncated(self, reply: Reply) -> None:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(reply.body[: len(reply.body) // 2])
            self.wfile.flush()
            self.close_connection = True

        def _handle_quietly(self) -> None:
            try:
                self._handle()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (e.g. its timeout): not our error

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle_quietly

    return Handler


Clock = Callable[[], float]
