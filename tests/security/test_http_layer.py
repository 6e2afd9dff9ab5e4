"""Attacks on the gateway's HTTP layer (aiohttp server on gunicorn's uvloop worker, and its own
upstream client), over raw sockets against the real ``tenant-metrics gateway`` subprocess.

What changed with the move from Flask/werkzeug is the request parser, the router's path
handling, connection reuse (keep-alive, pipelining), how responses are framed (HEAD,
chunked relays) and how a client disconnect or a slow client is handled while a body is
streamed from Prometheus through a pooled upstream connection. Every test sends bytes
exactly as written and parses the answers itself, so no client library hides a framing
error. A test passes when the system resists the attack and fails when it works.

"Reached Prometheus" is measured on Prometheus itself (``prometheus_http_requests_total``
of its API handlers), so a refused request is proved not to have been forwarded at all.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import pytest
import requests

from tests.security.test_isolation_attacks import (
    GUID,
    INTERNALS,
    LEAKY_ERROR_TEXT,
    forbidden,
    own_guids,
)
from tests.security.world import BRAVO, Creds, World, running_world

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, prometheus_binary: str) -> Iterator[World]:
    """One system for the whole module: the HTTP layer does not depend on the database kind."""
    workdir = tmp_path_factory.mktemp("http-layer")
    with running_world(workdir, prometheus_binary, f"sqlite:///{workdir / 'tm.sqlite3'}") as w:
        yield w


# --- raw HTTP/1.1 on a socket ---------------------------------------------------------------


@dataclass
class Answer:
    status: int
    version: bytes
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        found = [v for k, v in self.headers if k.lower() == name.lower()]
        return found[0] if found else None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


class Wire:
    """One TCP connection to the gateway; answers are framed strictly by RFC 9112."""

    def __init__(self, world: World, timeout: float = 15.0) -> None:
        parts = urlsplit(world.gateway)
        self.sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=timeout)
        self.buf = b""

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def reset(self) -> None:
        """Close with an RST (SO_LINGER 0): the gateway's next write fails at once."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode("latin-1") if isinstance(data, str) else data)

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            return False
        self.buf += chunk
        return bool(chunk)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise EOFError(f"connection closed in a head; got {self.buf[:200]!r}")
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"connection closed {n - len(self.buf)} bytes before the body's end")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, method: str = "GET") -> Answer:
        """The next answer on the connection, framed as the request's method says it must be."""
        line = self._line()
        m = re.fullmatch(rb"(HTTP/\d\.\d) (\d{3}) .*", line)
        assert m, f"the bytes where the next answer must start are not a status line: {line[:300]!r}"
        headers: list[tuple[str, str]] = []
        while (h := self._line()) != b"":
            name, _, value = h.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
        answer = Answer(int(m.group(2)), m.group(1), headers, b"")
        if method == "HEAD" or answer.status in (204, 304) or answer.status < 200:
            return answer
        te, cl = answer.header("Transfer-Encoding"), answer.header("Content-Length")
        if te is not None and te.lower() == "chunked":
            parts = []
            while (size := int(self._line().split(b";")[0], 16)) != 0:
                parts.append(self._exact(size))
                assert self._exact(2) == b"\r\n"
            while self._line() != b"":  # trailers
                pass
            answer.body = b"".join(parts)
        elif cl is not None:
            answer.body = self._exact(int(cl))
        else:
            while self._fill():
                pass
            answer.body, self.buf = self.buf, b""
        return answer

    def rest(self, wait: float = 1.0) -> tuple[bytes, bool]:
        """Whatever else arrives within ``wait`` seconds, and whether the gateway closed."""
        self.sock.settimeout(wait)
        closed = False
        try:
            while self._fill():
                pass
            closed = True
        except TimeoutError:
            pass
        out, self.buf = self.buf, b""
        return out, closed


def basic(creds: Creds) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()


def head(method: str, target: str, auth: str | None = None, extra: str = "", version: str = "HTTP/1.1") -> str:
    lines = [f"{method} {target} {version}", "Host: tenant-metrics.example"]
    if auth is not None:
        lines.append(f"Authorization: {auth}")
    return "\r\n".join(lines) + "\r\n" + extra + "\r\n"


FORM = "Content-Type: application/x-www-form-urlencoded\r\n"


def form_post(target: str, body: str, auth: str | None, extra: str = "") -> str:
    return head("POST", target, auth, FORM + extra + f"Content-Length: {len(body.encode())}\r\n") + body


def q(promql: str) -> str:
    return "/api/v1/query?" + urlencode({"query": promql})


def assert_isolated(tenant: str, answer: Answer, sent: str = "") -> None:
    """No other tenant's value in the answer (unless sent), every series one of the tenant's own."""
    leaked = sorted(m for m in forbidden(tenant) if m in answer.text and m not in sent)
    assert not leaked, f"{tenant} saw {leaked} in {answer.text[:500]}"
    if answer.status != 200 or not (answer.header("Content-Type") or "").startswith("application/json"):
        return
    data = answer.json()["data"]
    series: list[dict[str, Any]] = []
    if isinstance(data, dict) and isinstance(data.get("result"), list):
        series = [r.get("metric", {}) for r in data["result"]]
    elif isinstance(data, list) and data and isinstance(data[0], dict):
        series = data
    for labels in series:
        if labels.get(GUID) is not None:
            assert labels[GUID] in own_guids(tenant), f"{tenant} got a series of {labels[GUID]}"


def guids(answer: Answer) -> set[str]:
    assert answer.status == 200, answer.text[:300]
    return {r["metric"][GUID] for r in answer.json()["data"]["result"] if GUID in r["metric"]}


def assert_prometheus_error(answer: Answer, *statuses: int) -> None:
    assert answer.status in statuses, f"{answer.status}: {answer.text[:300]}"
    assert (answer.header("Content-Type") or "").startswith("application/json"), answer.headers
    body = answer.json()
    assert body["status"] == "error" and body["errorType"] and body["error"], body
    assert not [s for s in LEAKY_ERROR_TEXT + INTERNALS if s in answer.text], answer.text[:300]


def assert_aiohttp_bad_request(answer: Answer) -> None:
    """Malformed HTTP: aiohttp's own plain 400, no traceback, no file path."""
    assert answer.status == 400, f"{answer.status}: {answer.text[:300]}"
    assert not [s for s in ("Traceback", 'File "', ".py", "/work/", "site-packages") if s in answer.text], answer.text


def upstream_calls(world: World) -> float:
    """API requests Prometheus has served (its own counter), health and metrics excluded."""
    total = 0.0
    for line in requests.get(world.prometheus + "/metrics", timeout=10).text.splitlines():
        if line.startswith("prometheus_http_requests_total{"):
            handler = re.search(r'handler="([^"]*)"', line)
            if handler and handler.group(1) not in ("/metrics", "/-/ready", "/-/healthy"):
                total += float(line.rsplit(" ", 1)[1])
    return total


def worker_boots(world: World) -> int:
    """How many gunicorn workers have booted so far: a crashed worker is replaced, so this grows."""
    log = world.workdir / "gateway" / "gateway.log"
    return log.read_text(errors="replace").count("Booting worker with pid")


def serving(world: World) -> None:
    """/healthz answers and a query still gets only the tenant's own data."""
    assert requests.get(world.gateway + "/healthz", timeout=5).json() == {"status": "ok"}
    with Wire(world) as wire:
        wire.send(head("GET", q("up"), basic(world.tenants["alpha"])))
        assert guids(wire.response()) == own_guids("alpha")


@pytest.fixture
def no_crash(world: World) -> Iterator[None]:
    before = worker_boots(world)
    yield
    serving(world)
    assert worker_boots(world) == before, "a gateway worker died and was replaced"


# --- 1. response framing: HEAD ----------------------------------------------------------------

NOW = time.time()
ROUTES_FOR_HEAD = [
    q("up"),
    "/api/v1/query_range?" + urlencode({"query": "up", "start": NOW - 600, "end": NOW + 3600, "step": "1"}),
    "/api/v1/query_exemplars?query=up",
    "/api/v1/series?match[]=up",
    "/api/v1/labels",
    f"/api/v1/label/{GUID}/values",
    "/federate?match[]=up",
    "/api/v1/status/buildinfo",
    "/api/v1/metadata",
    "/api/v1/targets",
    "/api/v1/rules",
    "/api/v1/alerts",
]


@pytest.mark.parametrize("target", ROUTES_FOR_HEAD)
def test_head_answers_carry_no_body_so_the_next_answer_on_the_connection_is_its_own(
        world: World, target: str) -> None:
    """A HEAD answer has no content (RFC 9110 9.3.2): bytes written after its head are read by the
    client, or by a proxy pooling the connection for several tenants (the CF router), as the
    start of the *next* answer: tenant A's body handed out as tenant B's response."""
    with Wire(world) as wire:
        wire.send(head("HEAD", target, basic(world.tenants["alpha"]))
                  + head("GET", q("up"), basic(world.tenants["bravo"])))
        first = wire.response("HEAD")
        assert first.status == 200, first.status
        second = wire.response("GET")
        assert guids(second) == own_guids("bravo")
        leftover, _ = wire.rest(0.3)
        assert leftover == b"", f"bytes after the last answer: {leftover[:200]!r}"


# --- 2. request framing: smuggling --------------------------------------------------------------

HIDDEN = head("GET", q('{__name__=~".+"}'))  # no credentials: it may only ever get a 401
BODY = "query=up"
AMBIGUOUS = {
    "CL then TE": f"Content-Length: {len(BODY)}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "TE then CL": "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nquery=up\r\n0\r\n\r\n",
    "two different CL": f"Content-Length: {len(BODY)}\r\nContent-Length: 60\r\n\r\n{BODY}",
    "two equal CL": f"Content-Length: {len(BODY)}\r\nContent-Length: {len(BODY)}\r\n\r\n{BODY}",
    "CL list": f"Content-Length: {len(BODY)}, {len(BODY)}\r\n\r\n{BODY}",
    "CL with plus": f"Content-Length: +{len(BODY)}\r\n\r\n{BODY}",
    "CL hex": "Content-Length: 0x8\r\n\r\n" + BODY,
    "TE xchunked": "Transfer-Encoding: xchunked\r\n\r\n8\r\nquery=up\r\n0\r\n\r\n",
    "TE chunked, identity": "Transfer-Encoding: chunked, identity\r\n\r\n8\r\nquery=up\r\n0\r\n\r\n",
    "TE twice": "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nquery=up\r\n0\r\n\r\n",
    "TE space before colon": "Transfer-Encoding : chunked\r\n\r\n8\r\nquery=up\r\n0\r\n\r\n",
    "TE obs-fold": "Transfer-Encoding:\r\n chunked\r\n\r\n8\r\nquery=up\r\n0\r\n\r\n",
    "TE vertical tab": "Transfer-Encoding:\x0bchunked\r\n\r\n8\r\nquery=up\r\n0\r\n\r\n",
    "chunk size 0x": "Transfer-Encoding: chunked\r\n\r\n0x8\r\nquery=up\r\n0\r\n\r\n",
    "chunk size overflow": "Transfer-Encoding: chunked\r\n\r\n1" + "0" * 16 + "8\r\nquery=up\r\n0\r\n\r\n",
    "chunk bare LF": "Transfer-Encoding: chunked\r\n\r\n8\nquery=up\n0\n\n",
    "chunk size negative": "Transfer-Encoding: chunked\r\n\r\n-8\r\nquery=up\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("framing", sorted(AMBIGUOUS))
def test_ambiguous_framing_is_refused_and_the_hidden_request_never_runs(
        world: World, framing: str, no_crash: None) -> None:
    """Two parsers (a proxy in front, the gateway) reading one body differently is request
    smuggling: the hidden request rides on someone else's connection. The gateway must refuse
    the ambiguity outright (400, connection closed), so there is nothing left to smuggle."""
    before = upstream_calls(world)
    start = head("POST", "/api/v1/query", basic(world.tenants["alpha"]), FORM).removesuffix("\r\n")
    with Wire(world) as wire:
        wire.send(start + AMBIGUOUS[framing] + HIDDEN)
        first = wire.response("POST")
        assert_aiohttp_bad_request(first)
        leftover, closed = wire.rest(1.0)
        assert leftover == b"" and closed, f"after the 400: closed={closed}, {leftover[:300]!r}"
    assert upstream_calls(world) == before, "a request reached Prometheus"


def test_accepted_chunked_bodies_end_where_they_say_and_the_next_request_stands_alone(
        world: World, no_crash: None) -> None:
    """Unambiguous chunked bodies (with a chunk extension, and the query split across chunks,
    even inside a %-escape) are read to their end; the request after them on the connection
    is authenticated on its own (none: 401) and the enforced query shows alpha's data only."""
    other = '{cf_space_guid=~".+"}'
    encoded = "query=" + quote(other, safe="")
    cut = encoded.index("%")  # split inside escapes: "...%" | "7B..." and "...%3" | "D..."
    cut2 = encoded.index("%3D") + 2
    pieces = [encoded[: cut + 1], encoded[cut + 1 : cut2], encoded[cut2:]]
    chunked = "".join(f"{len(p):x};ext=1\r\n{p}\r\n" for p in pieces) + "0\r\nX-Trailer: 1\r\n\r\n"
    before = upstream_calls(world)
    with Wire(world) as wire:
        wire.send(head("POST", "/api/v1/query", basic(world.tenants["alpha"]),
                       FORM + "Transfer-Encoding: chunked\r\n") + chunked + HIDDEN)
        first = wire.response("POST")
        assert guids(first) == own_guids("alpha")
        assert_isolated("alpha", first, sent=other)
        second = wire.response()
        assert_prometheus_error(second, 401)
        assert second.header("WWW-Authenticate")
    assert upstream_calls(world) == before + 1


def test_a_body_longer_than_its_content_length_is_the_next_request_not_more_body(
        world: World, no_crash: None) -> None:
    """Content-Length decides; what follows is parsed as a request of its own, without the
    first request's credentials (a keep-alive connection remembers no one)."""
    with Wire(world) as wire:
        wire.send(form_post("/api/v1/query", "query=up", basic(world.tenants["bravo"])) + HIDDEN)
        assert guids(wire.response("POST")) == own_guids("bravo")
        assert_prometheus_error(wire.response(), 401)


# --- 3. keep-alive and pipelining: each request is authenticated on its own ------------------


def test_pipelined_requests_with_different_credentials_each_see_only_their_own(
        world: World, no_crash: None) -> None:
    a, b, o = (basic(world.tenants[t]) for t in ("alpha", "bravo", "org1"))
    wrong = "Basic " + base64.b64encode(f"{world.tenants['alpha'].username}:wrong-password".encode()).decode()
    everything = '{__name__=~".+"}'
    plan: list[tuple[str, str, str | None]] = [  # (method, request, tenant; None: a 401)
        ("GET", head("GET", q(everything), a), "alpha"),
        ("GET", head("GET", q(everything), b), "bravo"),
        ("GET", head("GET", q(everything)), None),
        ("POST", form_post("/api/v1/query", "query=" + quote(everything), o), "org1"),
        ("GET", head("GET", q(everything), wrong), None),
        ("GET", head("GET", q("sum("), b), "bravo"),  # a 400 keeps the connection and its order
        ("GET", head("GET", q(everything), a), "alpha"),
        ("GET", head("GET", q("up"), "Bearer " + world.tenants["bravo"].password), "bravo"),
        ("GET", head("GET", q(everything), a, "Authorization: \r\n"), None),  # two headers: 401
        ("GET", head("GET", q(everything)), None),
    ]
    before = upstream_calls(world)
    with Wire(world) as wire:
        wire.send("".join(req for _, req, _ in plan))
        answers = [wire.response(method) for method, _, _ in plan]
        assert wire.rest(0.3)[0] == b""
    for (_, req, tenant), answer in zip(plan, answers, strict=True):
        if tenant is None:
            assert_prometheus_error(answer, 401)
            continue
        assert_isolated(tenant, answer)
        if "sum%28" in req:
            assert_prometheus_error(answer, 400)
        else:
            assert guids(answer) == own_guids(tenant), req.split("\r\n")[0]
    assert upstream_calls(world) == before + 5  # the five 200s, nothing else


def test_interleaved_tenants_on_many_keepalive_connections(world: World, no_crash: None) -> None:
    """Four connections, each alternating tenants request by request, concurrently."""
    tenants = ["alpha", "bravo", "org1"]
    errors: list[str] = []

    def run(offset: int) -> None:
        try:
            with Wire(world) as wire:
                for i in range(15):
                    tenant = tenants[(i + offset) % 3]
                    wire.send(head("GET", q('{__name__=~".+"}'), basic(world.tenants[tenant])))
                    answer = wire.response()
                    if guids(answer) != own_guids(tenant):
                        errors.append(f"{tenant}: {guids(answer)}")
        except Exception as exc:  # reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []


def test_a_repeated_authorization_header_is_refused(world: World) -> None:
    """Two Authorization headers: 401, never one of them picked (nor both tenants' data)."""
    a, b = basic(world.tenants["alpha"]), basic(world.tenants["bravo"])
    for first, second in ((a, b), (b, a), (a, a)):
        for _ in range(4):  # fresh connections: both gunicorn workers answer
            with Wire(world) as wire:
                wire.send(head("GET", q("up"), first, f"Authorization: {second}\r\nConnection: close\r\n"))
                answer = wire.response()
            assert_prometheus_error(answer, 401)
            assert b"more than one Authorization header" in answer.body


def test_client_supplied_tenancy_and_forwarding_headers_are_ignored(world: World) -> None:
    tricks = (f"X-Scope-OrgID: {BRAVO.labels['cf_space_guid']}\r\nX-Forwarded-For: 127.0.0.1\r\n"
              "X-Forwarded-Host: prometheus\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Prefix: /api/v1/admin\r\n"
              "X-Original-URL: /api/v1/admin/tsdb/delete_series\r\nX-Rewrite-URL: /api/v1/status/config\r\n"
              "X-HTTP-Method-Override: DELETE\r\nForwarded: for=127.0.0.1;host=prometheus\r\n"
              "X-Real-IP: 127.0.0.1\r\nX-Request-Id: x\r\n\tinjected\r\n")
    with Wire(world) as wire:
        wire.send(head("GET", q("up"), basic(world.tenants["alpha"]), tricks.replace("\r\n\tinjected", "")))
        assert guids(wire.response()) == own_guids("alpha")


# --- 4. request targets, paths and methods ----------------------------------------------------

REFUSED_TARGETS = [
    ("GET", "http://evil.example/api/v1/admin/tsdb/delete_series?match[]=up"),
    ("POST", "http://127.0.0.1:9090/api/v1/admin/tsdb/delete_series?match[]=up"),
    ("GET", "http://evil.example/api/v1/status/config"),
    ("GET", "//api/v1/admin/tsdb/delete_series?match[]=up"),
    ("POST", "/api/v1/../api/v1/admin/tsdb/delete_series?match[]=up"),
    ("POST", "/api/v1/query/../admin/tsdb/snapshot"),
    ("POST", "/api%2Fv1/admin/tsdb/delete_series?match[]=up"),
    ("POST", "/api/v1/admin%2Ftsdb%2Fdelete_series?match[]=up"),
    ("POST", "/api/v1%2Fadmin/tsdb/snapshot"),
    ("GET", "/api/v1/label/job%2F..%2F..%2Fadmin/values"),
    ("GET", "/api/v1/label/job%2F..%2F..%2Fstatus%2Fconfig/values"),
    ("GET", "/api/v1/label/..%2F..%2F..%2Fapi%2Fv1%2Fstatus%2Fconfig/values"),
    ("GET", "/api/v1/%2e%2e/v1/status/config"),
    ("GET", "/api/v1/%252e%252e/status/config"),
    ("GET", "/api/v1/status/config%00"),
    ("GET", "/api/v1/status\\config"),
    ("GET", "/api/v1/query%3F/../../status/config"),
    ("GET", "/API/V1/STATUS/CONFIG"),
    ("GET", "/federate/../api/v1/status/config"),
    ("GET", "/ui/..%2f..%2fapi/v1/status/config"),
    ("OPTIONS", "*"),
    ("CONNECT", "127.0.0.1:9090"),
    ("CONNECT", "/api/v1/query?query=up"),
    ("TRACE", "/api/v1/query?query=up"),
    ("PROPFIND", "/api/v1/query"),
    ("OPTIONS", "/api/v1/query?query=up"),
    ("PUT", "/api/v1/series?match[]=up"),
    ("DELETE", "/api/v1/series?match[]=up"),
    ("PATCH", "/api/v1/labels"),
    ("MKCOL", "/api/v1/admin/"),
    ("TRACE", "/"),
]


@pytest.mark.parametrize(("method", "target"), REFUSED_TARGETS)
def test_tricky_targets_and_methods_are_refused_without_reaching_prometheus(
        world: World, method: str, target: str) -> None:
    before = upstream_calls(world)
    with Wire(world) as wire:
        wire.send(head(method, target, basic(world.tenants["alpha"]), "Content-Length: 0\r\n"))
        answer = wire.response(method)
    if (answer.header("Content-Type") or "").startswith("text/plain"):
        assert_aiohttp_bad_request(answer)
    else:
        assert_prometheus_error(answer, 400, 403, 404, 405)
    assert not [m for m in forbidden("alpha") if m in answer.text], answer.text[:300]
    assert world.tenants["alpha"].password not in answer.text  # TRACE must not echo the request
    assert upstream_calls(world) == before, f"{method} {target} reached Prometheus"


def test_the_host_in_an_absolute_form_target_or_header_changes_nothing(world: World) -> None:
    """The upstream is fixed (PROMETHEUS_URLS): no Host, absolute URL or double slash picks it."""
    targets = ["http://127.0.0.1:1" + q("up"), "http://evil.example" + q("up"),
               "https://user:pass@evil.example" + q("up")]
    for target in targets:
        with Wire(world) as wire:
            wire.send(head("GET", target, basic(world.tenants["alpha"]), "Host: 127.0.0.1:1\r\n"))
            answer = wire.response()
        assert answer.status in (200, 400), answer.text[:200]
        if answer.status == 200:
            assert guids(answer) == own_guids("alpha"), target
    with Wire(world) as wire:
        wire.send(head("GET", "//api/v1/query?query=up", basic(world.tenants["alpha"])))
        assert_prometheus_error(wire.response(), 404)


# --- 5. parameters: URL and body, encodings, separators --------------------------------------


def test_parameters_from_url_and_body_are_merged_strictly(world: World, no_crash: None) -> None:
    a = basic(world.tenants["alpha"])
    everything = quote('{cf_space_guid=~".+"}', safe="")
    with Wire(world) as wire:
        # `query` in the URL and the form body: a repeat, refused (Prometheus would take one)
        wire.send(form_post("/api/v1/query?query=up", f"query={everything}", a))
        answer = wire.response("POST")
        assert_prometheus_error(answer, 400)
        assert "more than once" in answer.json()["error"]
        # `match[]` in both: both selectors are used, and both are enforced
        wire.send(form_post("/api/v1/series?match[]=up", f"match[]={everything}", a))
        answer = wire.response("POST")
        assert_isolated("alpha", answer)
        names = {s["__name__"] for s in answer.json()["data"]}
        assert "up" in names and "alpha_only_metric" in names, names
        assert {s[GUID] for s in answer.json()["data"]} == own_guids("alpha")
        # the same for label values, through the URL only (GET) and with an empty selector
        wire.send(head("GET", f"/api/v1/label/{GUID}/values?match[]=up&match[]={everything}", a))
        answer = wire.response()
        assert set(answer.json()["data"]) == own_guids("alpha")


NON_UTF8 = [
    ("GET", q("up") + "%FF", None),
    ("GET", "/api/v1/query?query=%FF%FE", None),
    ("GET", "/api/v1/query?query=up%C0%AF", None),
    ("GET", "/api/v1/series?match[]=up%FF", None),
    ("GET", f"/api/v1/label/{GUID}/values?match[]=%7Bcf_space_guid%3D~%22.%2B%22%7D%FF", None),
    ("POST", "/api/v1/query", "query=up%FF"),
    ("POST", "/api/v1/query", "query=%7Bcf_space_guid%3D~%22.%2B%22%7D%ED%A0%80"),
    ("POST", "/api/v1/series", "match[]=up%FF"),
    ("POST", "/api/v1/query", "query=up\udcff"),  # a raw 0xFF byte (latin-1 on the wire)
    ("GET", "/api/v1/query?query=up;query=" + quote('{cf_space_guid=~".+"}'), None),
    ("POST", "/api/v1/query", "query=up;query=" + quote('{cf_space_guid=~".+"}')),
    ("GET", "/api/v1/query_range?query=up;start=0;end=1;step=1", None),
]


@pytest.mark.parametrize(("method", "target", "body"), NON_UTF8)
def test_non_utf8_and_semicolon_parameters_are_refused_not_guessed(
        world: World, method: str, target: str, body: str | None) -> None:
    a = basic(world.tenants["alpha"])
    before = upstream_calls(world)
    with Wire(world) as wire:
        if body is None:
            wire.send(head(method, target, a))
        else:
            raw = body.encode("utf-8", "surrogateescape")
            wire.send(head(method, target, a, FORM + f"Content-Length: {len(raw)}\r\n").encode() + raw)
        answer = wire.response(method)
    assert_prometheus_error(answer, 400)
    assert_isolated("alpha", answer, sent=target + (body or ""))
    assert upstream_calls(world) == before


# --- 6. oversized heads ------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [
    "X-Long: " + "a" * 100_000 + "\r\n",
    "Authorization: Basic " + "QUFB" * 3000 + "\r\n",
    "".join(f"X-H{i}: v\r\n" for i in range(1000)),
    "Cookie: " + "; ".join(f"c{i}=v" for i in range(3000)) + "\r\n",
], ids=["100kB header", "12kB authorization", "1000 headers", "huge cookie"])
def test_oversized_heads_get_a_plain_400_and_the_gateway_keeps_serving(
        world: World, extra: str, no_crash: None) -> None:
    with Wire(world) as wire:
        wire.send(head("GET", q("up"), None, extra))
        answer = wire.response()
        assert answer.status in (400, 401, 431), answer.text[:200]
        if answer.status == 400:
            assert_aiohttp_bad_request(answer)
        else:
            assert_prometheus_error(answer, 401, 431)


def test_an_oversized_request_line_gets_a_plain_400(world: World, no_crash: None) -> None:
    with Wire(world) as wire:
        wire.send(head("GET", q("up") + "&x=" + "a" * 20_000, basic(world.tenants["alpha"])))
        assert_aiohttp_bad_request(wire.response())


# --- 7. slow and vanishing clients during a streamed answer ---------------------------------


def big_range_query() -> str:
    """About 2.5 MB for bravo: every series at 11000 points (``@ end()`` fills every step)."""
    now = time.time()
    return "/api/v1/query_range?" + urlencode(
        {"query": '{__name__=~".+"} @ end()', "start": now - 10_999, "end": now, "step": "1"})


def test_clients_that_stop_reading_a_big_answer_do_not_stall_anyone_else(
        world: World, no_crash: None) -> None:
    b = basic(world.tenants["bravo"])
    stalled = [Wire(world) for _ in range(6)]
    try:
        for wire in stalled:
            wire.send(head("GET", big_range_query(), b))
            wire.sock.recv(1)  # the answer has started; now read nothing more
        for _ in range(20):  # fresh connections, so both workers are asked
            began = time.monotonic()
            with Wire(world, timeout=5) as wire:
                wire.send(head("GET", q('{__name__=~".+"}'), basic(world.tenants["alpha"]),
                               "Connection: close\r\n"))
                answer = wire.response()
            assert guids(answer) == own_guids("alpha")
            assert time.monotonic() - began < 2
        # a stalled client that resumes gets its whole answer, intact
        wire = stalled[0]
        wire.sock.settimeout(30)
        wire.buf = b"H"  # the byte read above
        answer = wire.response()
        assert answer.status == 200 and answer.json()["status"] == "success"
        assert_isolated("bravo", answer)
    finally:
        for wire in stalled:
            wire.reset()


def test_clients_vanishing_mid_answer_leave_no_bytes_for_the_next_tenant(
        world: World, no_crash: None) -> None:
    """A pooled upstream connection given back with part of bravo's answer unread would hand
    those bytes to the next request on it, whoever sent that: alpha's queries on the same
    workers right after must each get exactly alpha's complete answer."""
    a, b = basic(world.tenants["alpha"]), basic(world.tenants["bravo"])
    keep = [Wire(world) for _ in range(4)]  # alpha's keep-alive connections
    try:
        for round_ in range(12):
            with Wire(world) as wire:
                wire.send(head("GET", big_range_query(), b))
                if round_ % 3 == 0:
                    pass  # gone before the upstream has answered
                else:
                    wire.sock.recv(65536 * (round_ % 3))
                if round_ % 2:
                    wire.reset()
            for n, alpha in enumerate(keep):
                alpha.send(head("GET", q('{__name__=~".+"}'), a))
                try:
                    answer = alpha.response()
                except TimeoutError:
                    pytest.fail(f"round {round_}: alpha's keep-alive connection {n} got no answer in 15 s")
                assert guids(answer) == own_guids("alpha")
                assert_isolated("alpha", answer)
            with Wire(world) as wire:  # half-closed: request sent, then no more reading
                wire.send(head("GET", big_range_query(), b, "Connection: close\r\n"))
                wire.sock.shutdown(socket.SHUT_WR)
    finally:
        for alpha in keep:
            alpha.close()


# --- 8. what errors reveal, and what is logged ---------------------------------------------

MALFORMED_WITH_CREDENTIALS = {
    "bare LF line ends": lambda auth: f"GET /api/v1/query?query=up HTTP/1.1\nHost: x\nAuthorization: {auth}\n\n",
    "space before the colon": lambda auth: f"GET /api/v1/query?query=up HTTP/1.1\r\nHost: x\r\n"
                                           f"Authorization : {auth}\r\n\r\n",
    "NUL in the value": lambda auth: f"GET /api/v1/query?query=up HTTP/1.1\r\nHost: x\r\n"
                                     f"Authorization: {auth}\x00\r\n\r\n",
    "obs-fold": lambda auth: f"GET /api/v1/query?query=up HTTP/1.1\r\nHost: x\r\nAuthorization:\r\n {auth}\r\n\r\n",
    "bad version": lambda auth: f"GET /api/v1/query?query=up HTTP/1.7\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n",
}


def test_malformed_requests_never_write_credentials_to_the_log(world: World) -> None:
    """aiohttp's parser errors quote the bytes around the fault; the worker logs them (gunicorn's
    "Error handling request", at ERROR, whatever LOG_LEVEL says). A client whose request is
    slightly malformed must not get its Basic credentials (base64 is plaintext) into the logs."""
    creds = world.bind(world.tenants["alpha"].instance_id, "space")
    token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    for name, build in MALFORMED_WITH_CREDENTIALS.items():
        with Wire(world) as wire:
            wire.send(build(basic(creds)))
            answer = wire.response()
        assert answer.status == 400, (name, answer.status)
        assert_aiohttp_bad_request(answer)
    time.sleep(0.5)  # let the workers' log lines land
    log = (world.workdir / "gateway" / "gateway.log").read_text(errors="replace")
    leaked = [name for name, secret in (("password", creds.password), ("Basic token", token)) if secret in log]
    lines = [line[:160] for line in log.splitlines() if token[:24] in line or creds.password in line]
    assert leaked == [], f"credentials in gateway.log: {leaked}: {lines[:3]}"


def test_error_answers_of_the_http_layer_reveal_no_internals(world: World) -> None:
    a = basic(world.tenants["alpha"])
    requests_: list[tuple[str, str]] = [
        ("GET", head("GET", "/nope", a)),
        ("GET", head("GET", "/api/v1/nope", a)),
        ("PUT", head("PUT", "/api/v1/query", a, "Content-Length: 0\r\n")),
        ("POST", head("POST", "/api/v1/query", a, "Content-Type: multipart/form-data; boundary=x\r\n"
                      "Content-Length: 5\r\n") + "--x--"),
        ("POST", head("POST", "/api/v1/query", a, FORM + "Content-Length: 2000000\r\n") + "query=up&p=" + "x" * 2_000_000),
        ("POST", head("POST", "/api/v1/query", a, "Content-Type: application/x-www-form-urlencoded; charset=latin-1\r\n"
                      "Content-Length: 9\r\n") + "query=up\xe9"),
        ("GET", head("GET", "/api/v1/query?query=up", "Basic " + "A" * 500)),
        ("GET", head("GET", q("up"), a, "Expect: 100-continue\r\n")),
    ]
    for method, req in requests_:
        with Wire(world) as wire:
            wire.send(req.encode("latin-1"))
            answer = wire.response(method)
            while answer.status == 100:
                answer = wire.response(method)
        assert answer.status < 500, (req[:60], answer.status, answer.text[:200])
        if answer.status != 200:
            assert_prometheus_error(answer, answer.status)
        else:
            assert_isolated("alpha", answer)


@pytest.mark.parametrize("extra", [
    FORM + "Content-Encoding: gzip\r\n",
    FORM + "Content-Encoding: deflate\r\n",
    "Content-Type: application/x-www-form-urlencoded; charset=no-such-charset\r\n",
], ids=["gzip that is not gzip", "deflate that is not deflate", "unknown charset"])
def test_undecodable_bodies_are_the_clients_fault_not_a_500(world: World, extra: str) -> None:
    """A body the gateway cannot decode is a 400 in Prometheus's format, like any bad input;
    a 500 ("internal", an ERROR with a traceback in the log) is for the gateway's own faults."""
    with Wire(world) as wire:
        wire.send(head("POST", "/api/v1/query", basic(world.tenants["alpha"]),
                       extra + "Content-Length: 8\r\n") + "query=up")
        answer = wire.response("POST")
    if (answer.header("Content-Type") or "").startswith("text/plain"):
        assert_aiohttp_bad_request(answer)
    else:
        assert_prometheus_error(answer, 400)
