"""gateway/httpclient.py against real servers on loopback.

Most servers here are raw sockets in threads: each reads a request head and writes the
exact bytes a test chooses, split into TCP writes where it matters, so the framing
(Content-Length, chunked, end of connection), keep-alive and failures are under the
test's control. The client runs on a fresh event loop per test, on asyncio's own loop
and on uvloop (production runs uvloop, whose transports are not asyncio.Transport
subclasses).
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
import uvloop
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response as WsgiResponse

from gateway.httpclient import (
    HIGH_WATER,
    ConnectFailed,
    ConnectTimeout,
    Disconnected,
    Pool,
    ProtocolError,
    ReadTimeout,
    Response,
)
from tenant_metrics.world import serve_wsgi

T = TypeVar("T")
Runner = Callable[[Coroutine[Any, Any, T]], T]

# The most one read from a socket hands to data_received: 256 KiB in asyncio's selector
# transport, 256,000 bytes in uvloop's.
MAX_READ = 256 * 1024
TEST_TIMEOUT = 10.0


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner[Any]:
    """Run a coroutine to the end on a new loop of the parametrized kind."""
    factory = asyncio.new_event_loop if request.param == "asyncio" else uvloop.new_event_loop

    def _run(coro: Coroutine[Any, Any, T]) -> T:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(asyncio.wait_for(coro, TEST_TIMEOUT))

    return _run


async def _until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    """Wait (letting the loop run) until predicate() holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


# --- a raw-socket server ---------------------------------------------------------------


class Peer:
    """One accepted connection, seen from the server's side."""

    def __init__(self, server: RawServer, sock: socket.socket, index: int) -> None:
        self.server = server
        self.sock = sock
        self.index = index  # 0 for the first connection accepted, 1 for the next...
        self._buf = b""

    def read_request(self) -> bytes | None:
        """The next request (head and Content-Length body) as received; None at EOF."""
        while b"\r\n\r\n" not in self._buf:
            data = self.sock.recv(65536)
            if not data:
                self.server.saw_eof(self.index)
                return None
            self._buf += data
        head, _, rest = self._buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            data = self.sock.recv(65536)
            if not data:
                self.server.saw_eof(self.index)
                return None
            rest += data
        self._buf = rest[length:]
        request = head + b"\r\n\r\n" + rest[:length]
        self.server.record(self.index, request)
        return request

    def send(self, *pieces: bytes, pause: float = 0.0) -> None:
        """Write the pieces as separate TCP writes, `pause` seconds apart."""
        for i, piece in enumerate(pieces):
            if i and pause:
                time.sleep(pause)
            self.sock.sendall(piece)

    def wait_eof(self, timeout: float = 5.0) -> None:
        """Read (and drop) until the client closes; record that it did."""
        self.sock.settimeout(timeout)
        while self.sock.recv(65536):
            pass
        self.server.saw_eof(self.index)


class RawServer:
    """A TCP server on loopback; `handler(peer)` runs per connection, in its own thread.

    The connection is closed when the handler returns."""

    def __init__(self, handler: Callable[[Peer], None], host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.bind((host, 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"
        self._handler = handler
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.accepts = 0
        self.requests: list[tuple[int, bytes]] = []  # (connection index, raw request)
        self.eofs: set[int] = set()  # connections the client closed
        self.errors: list[BaseException] = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:  # shut down by close()
                return
            sock.settimeout(5.0)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                index = self.accepts
                self.accepts += 1
                self._socks.append(sock)
            thread = threading.Thread(target=self._serve, args=(sock, index), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, index: int) -> None:
        try:
            self._handler(Peer(self, sock, index))
        except OSError:
            pass  # the client went away (reset, timeout): the test's assertions tell
        except BaseException as exc:  # noqa: BLE001 - reported by close()
            self.errors.append(exc)
        finally:
            sock.close()

    def record(self, index: int, request: bytes) -> None:
        with self._lock:
            self.requests.append((index, request))

    def saw_eof(self, index: int) -> None:
        with self._lock:
            self.eofs.add(index)

    def close(self) -> None:
        self._stop.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self._acceptor.join(timeout=2)
        with self._lock:
            socks = list(self._socks)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(timeout=2)
        self._listener.close()
        assert not self.errors, self.errors


@contextmanager
def raw_server(handler: Callable[[Peer], None], host: str = "127.0.0.1") -> Iterator[RawServer]:
    server = RawServer(handler, host)
    try:
        yield server
    finally:
        server.close()


def ok(body: bytes, *extra: str) -> bytes:
    """A 200 answer with a Content-Length body."""
    head = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def serve_all(answer: Callable[[Peer, int], bytes]) -> Callable[[Peer], None]:
    """A handler answering every request on a connection, until the client closes it."""

    def handler(peer: Peer) -> None:
        n = 0
        while peer.read_request() is not None:
            peer.send(answer(peer, n))
            n += 1

    return handler


def numbered(peer: Peer, n: int) -> bytes:
    return ok(f"conn{peer.index} req{n}".encode())


async def get(pool: Pool, path: str = "/x", read_timeout: float = 5.0) -> Response:
    return await pool.request("GET", path, {}, None, read_timeout)


async def get_body(pool: Pool, path: str = "/x") -> bytes:
    return await (await get(pool, path)).read()


# --- framing: the body comes back exactly -----------------------------------------------

BINARY = bytes(range(256)) * 7 + b"\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"


def test_content_length_body_status_and_headers(run: Runner[Any]) -> None:
    def handler(peer: Peer) -> None:
        peer.read_request()
        head = (
            f"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
            f"X-Multi: a\r\nx-multi: b\r\nContent-Length: {len(BINARY)}\r\n\r\n"
        ).encode()
        peer.send(head[:20], head[20:] + BINARY[:100], BINARY[100:1000], BINARY[1000:], pause=0.02)

    async def body(url: str) -> None:
        pool = Pool(url)
        resp = await get(pool)
        assert resp.status == 404
        assert resp.headers["CONTENT-TYPE"] == "application/json"
        assert resp.headers.getall("X-MULTI") == ["a", "b"]
        assert await resp.read() == BINARY
        pool.close()

    with raw_server(handler) as server:
        run(body(server.url))


def test_chunked_body_split_everywhere(run: Runner[Any]) -> None:
    data_a, data_b, data_c = b"hello", bytes(range(26)), b"\r\n0\r\n\r\n" + b"z" * 300
    pieces = [
        b"HTTP/1.1 200 OK\r\nX-Head: one\r\nTransfer-Enc",  # split inside a header line
        b"oding: chunked\r\nX-Head: two\r\n\r\n",
        b"5\r\nhello\r\n1",  # split inside the chunk-size line (0x1a)
        b"a\r\n" + data_b[:10],
        data_b[10:] + b"\r\n",
        b"%x;ext=1\r\n" % len(data_c) + data_c + b"\r\n",
        b"0\r\n",
        b"\r\n",
    ]

    def handler(peer: Peer) -> None:
        peer.read_request()
        peer.send(*pieces, pause=0.02)
        # The chunked framing ended exactly: the connection serves the next answer too.
        if peer.read_request() is not None:
            peer.send(ok(b"second"))
            peer.wait_eof()

    async def body(url: str) -> None:
        pool = Pool(url)
        resp = await get(pool)
        assert resp.status == 200
        assert resp.headers.getall("x-head") == ["one", "two"]
        chunks = [chunk async for chunk in resp.chunks()]
        assert b"".join(chunks) == data_a + data_b + data_c
        assert len(chunks) >= 3  # handed on as they came, not gathered
        assert await get_body(pool) == b"second"
        pool.close()

    with raw_server(handler) as server:
        run(body(server.url))
        assert server.accepts == 1


def test_body_delimited_by_connection_close(run: Runner[Any]) -> None:
    def handler(peer: Peer) -> None:
        if peer.read_request() is None:
            return
        if peer.index == 0:
            head = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\n"
            peer.send(head, BINARY[:500], BINARY[500:], pause=0.02)
        else:
            peer.send(ok(b"next"))
            peer.wait_eof()

    async def body(url: str) -> None:
        pool = Pool(url)
        resp = await get(pool)
        assert resp.headers["content-type"] == "text/plain"
        assert await resp.read() == BINARY
        assert await get_body(pool) == b"next"  # on a new connection
        pool.close()

    with raw_server(handler) as server:
        run(body(server.url))
        assert server.accepts == 2


def test_no_content_answer_keeps_the_connection(run: Runner[Any]) -> None:
    def answer(peer: Peer, n: int) -> bytes:
        return b"HTTP/1.1 204 No Content\r\n\r\n" if n == 0 else ok(b"after")

    async def body(url: str) -> None:
        pool = Pool(url)
        resp = await get(pool)
        assert resp.status == 204
        assert await resp.read() == b""
        assert await get_body(pool) == b"after"
        pool.close()

    with raw_server(serve_all(answer)) as server:
        run(body(server.url))
        assert server.accepts == 1


def test_well_behaved_server_werkzeug(run: Runner[Any]) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        req = Request(environ)
        text = f"{req.method} {req.path} {req.query_string.decode()} {req.get_data().decode()}"
        return WsgiResponse(text, headers={"X-Seen-Type": req.content_type or ""})(
            environ, start_response
        )

    async def body(url: str) -> None:
        pool = Pool(url + "/prefix")
        resp = await pool.request("GET", "/api/v1/query?query=up", {}, None, 5)
        assert resp.status == 200
        assert await resp.read() == b"GET /prefix/api/v1/query query=up "
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        resp = await pool.request("POST", "/api/v1/query", form, b"query=up", 5)
        assert await resp.read() == b"POST /prefix/api/v1/query  query=up"
        assert resp.headers["x-seen-type"] == "application/x-www-form-urlencoded"
        pool.close()

    with serve_wsgi(app) as url:
        run(body(url))


# --- what the server receives -------------------------------------------------------------


def _parse_request(raw: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = [(n, v.strip()) for n, _, v in (h.partition(":") for h in header_lines)]
    return line, headers, body


def test_request_bytes_get_and_post(run: Runner[Any]) -> None:
    async def body(url: str) -> None:
        pool = Pool(url + "/prom/")
        sent = {"User-Agent": "tenant-metrics-gateway", "Accept-Encoding": "gzip"}
        await (await pool.request("GET", "/api/v1/query?query=up&time=1", sent, None, 5)).read()
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        await (await pool.request("POST", "/api/v1/query_range", form, b"query=up%7B%7D", 5)).read()
        pool.close()

    with raw_server(serve_all(numbered)) as server:
        run(body(server.url))
        assert len(server.requests) == 2
        line, headers, payload = _parse_request(server.requests[0][1])
        assert line == "GET /prom/api/v1/query?query=up&time=1 HTTP/1.1"
        assert headers[0] == ("Host", f"127.0.0.1:{server.port}")
        assert ("User-Agent", "tenant-metrics-gateway") in headers
        assert ("Accept-Encoding", "gzip") in headers
        assert [n for n, _ in headers if n.lower() in ("content-length", "transfer-encoding")] == []
        assert payload == b""
        line, headers, payload = _parse_request(server.requests[1][1])
        assert line == "POST /prom/api/v1/query_range HTTP/1.1"
        assert ("Content-Length", "14") in headers
        assert ("Content-Type", "application/x-www-form-urlencoded") in headers
        assert payload == b"query=up%7B%7D"


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_host_header_ipv6_bracketed(run: Runner[Any]) -> None:
    with raw_server(serve_all(numbered), host="::1") as server:
        run(get_body(Pool(server.url)))
        line, headers, _ = _parse_request(server.requests[0][1])
        assert line == "GET /x HTTP/1.1"
        assert headers[0] == ("Host", f"[::1]:{server.port}")


def test_host_header_without_default_port() -> None:
    # Port 80/443 cannot be bound here: the header the pool will send is checked as built.
    assert Pool("http://prometheus.internal/").host_header == "prometheus.internal"
    assert Pool("https://prometheus.internal:443").host_header == "prometheus.internal"
    assert Pool("http://prometheus.internal:9090").host_header == "prometheus.internal:9090"
    assert Pool("http://[fd00::1]/").host_header == "[fd00::1]"
    assert Pool("https://prometheus.internal:80").host_header == "prometheus.internal:80"


# --- keep-alive -------------------------------------------------------------------------


def test_sequential_requests_share_one_connection(run: Runner[Any]) -> None:
    async def body(url: str) -> None:
        pool = Pool(url)
        bodies = [await get_body(pool) for _ in range(5)]
        assert bodies == [f"conn0 req{n}".encode() for n in range(5)]
        pool.close()

    with raw_server(serve_all(numbered)) as server:
        run(body(server.url))
        assert server.accepts == 1


def test_connection_close_answer_is_not_reused(run: Runner[Any]) -> None:
    def answer(peer: Peer, n: int) -> bytes:
        # The server says close but leaves the socket open: the client must close it.
        return ok(b"bye", "Connection: close") if peer.index == 0 else numbered(peer, n)

    async def body(server: RawServer) -> None:
        pool = Pool(server.url)
        assert await get_body(pool) == b"bye"
        await _until(lambda: 0 in server.eofs)
        assert await get_body(pool) == b"conn1 req0"
        pool.close()

    with raw_server(serve_all(answer)) as server:
        run(body(server))
        assert server.accepts == 2
        assert [i for i, _ in server.requests] == [0, 1]


@pytest.mark.parametrize("read_first", [False, True])
def test_unfinished_body_is_not_reused(run: Runner[Any], read_first: bool) -> None:
    def handler(peer: Peer) -> None:
        if peer.read_request() is None:
            return
        if peer.index == 0:  # half the body, then wait: the client gives up on it
            peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + b"a" * 1000)
            # A reused connection would send its request here: answer it, so it shows.
            if peer.read_request() is not None:
                peer.send(b"b" * 1000)
            peer.wait_eof()
        else:
            peer.send(ok(b"fresh"))
            peer.wait_eof()

    async def body(server: RawServer) -> None:
        pool = Pool(server.url)
        resp = await get(pool)
        if read_first:
            stream = resp.chunks()
            assert await anext(stream) == b"a" * 1000
            await stream.aclose()  # breaking off the stream releases the connection
        else:
            resp.release()
        await _until(lambda: 0 in server.eofs)
        assert await get_body(pool) == b"fresh"
        pool.close()

    with raw_server(handler) as server:
        run(body(server))
        assert server.accepts == 2
        assert [i for i, _ in server.requests] == [0, 1]


def test_pool_size_bounds_the_idle_connections(run: Runner[Any]) -> None:
    async def body(server: RawServer) -> None:
        pool = Pool(server.url, size=1)
        responses = await asyncio.gather(*(get(pool) for _ in range(3)))
        assert server.accepts == 3
        for resp in responses:
            await resp.read()
        await _until(lambda: len(server.eofs) == 2)
        assert await get_body(pool) in {b"conn0 req1", b"conn1 req1", b"conn2 req1"}
        assert server.accepts == 3
        pool.close()

    with raw_server(serve_all(numbered)) as server:
        run(body(server))


def test_pool_close_closes_idle_connections(run: Runner[Any]) -> None:
    async def body(server: RawServer) -> None:
        pool = Pool(server.url)
        responses = await asyncio.gather(get(pool), get(pool))
        for resp in responses:
            await resp.read()
        await asyncio.sleep(0.05)
        assert server.eofs == set()  # kept alive until now
        pool.close()
        await _until(lambda: server.eofs == {0, 1})

    with raw_server(serve_all(numbered)) as server:
        run(body(server))
        assert server.accepts == 2


# --- connections the server closes ----------------------------------------------------------


def test_idle_connection_closed_by_server_is_not_reused(run: Runner[Any]) -> None:
    def handler(peer: Peer) -> None:  # answers one request (kept alive), then closes
        if peer.read_request() is not None:
            peer.send(numbered(peer, 0))

    async def body(server: RawServer) -> None:
        pool = Pool(server.url)
        assert await get_body(pool) == b"conn0 req0"
        # The client notices the close while the connection is idle and drops it (the
        # pool's idle list, read here, tells this from a retry after a failed reuse).
        await _until(lambda: not pool._idle)
        assert await get_body(pool) == b"conn1 req0"
        pool.close()

    with raw_server(handler) as server:
        run(body(server))
        assert server.accepts == 2
        assert [i for i, _ in server.requests] == [0, 1]


def test_idle_connection_that_talks_is_dropped(run: Runner[Any]) -> None:
    def handler(peer: Peer) -> None:
        if peer.read_request() is None:
            return
        peer.send(numbered(peer, 0))
        if peer.index == 0:
            time.sleep(0.1)
            peer.send(ok(b"unasked"))  # while the connection is idle in the pool
        serve_all(numbered)(peer)

    async def body(server: RawServer) -> None:
        pool = Pool(server.url)
        assert await get_body(pool) == b"conn0 req0"
        await _until(lambda: 0 in server.eofs)
        assert await get_body(pool) == b"conn1 req0"
        pool.close()

    with raw_server(handler) as server:
        run(body(server))

def _close_on_second(peer: Peer, fresh_too: bool = False) -> None:
    """Answer the first request; read the second and close without answering.

    With fresh_too, connections after the first close without answering at all."""
    if peer.index > 0 and fresh_too:
        peer.read_request()
        return
    if peer.read_request() is None:
        return
    peer.send(numbered(peer, 0))
    peer.read_request()


def test_kept_alive_connection_closed_at_reuse_is_retried_once(run: Runner[Any]) -> None:
    async def body(url: str) -> None:
        pool = Pool(url)
        assert await get_body(pool, "/first") == b"conn0 req0"
        assert await get_body(pool, "/second") == b"conn1 req0"
        pool.close()

    with raw_server(_close_on_second) as server:
        run(body(server.url))
        assert server.accepts == 2
        targets = [(i, raw.split(b" ")[1]) for i, raw in server.requests]
        assert targets == [(0, b"/first"), (0, b"/second"), (1, b"/second")]


def test_retry_happens_only_once(run: Runner[Any]) -> None:
    async def body(server: RawServer) -> None:
        pool = Pool(server.url)
        assert await get_body(pool) == b"conn0 req0"
        with pytest.raises(Disconnected):
            await get(pool)
        await asyncio.sleep(0.1)
        assert server.accepts == 2

    with raw_server(lambda peer: _close_on_second(peer, fresh_too=True)) as server:
        run(body(server))


def test_fresh_connection_closed_without_answer_raises(run: Runner[Any]) -> None:
    async def body(server: RawServer) -> None:
        pool = Pool(server.url)
        with pytest.raises(Disconnected) as caught:
            await get(pool)
        assert isinstance(caught.value, ConnectionError)
        await asyncio.sleep(0.1)
        assert server.accepts == 1  # no retry on a fresh connection

    with raw_server(lambda peer: peer.read_request() and None) as server:
        run(body(server))


def test_partial_answer_on_reused_connection_is_not_retried(run: Runner[Any]) -> None:
    def handler(peer: Peer) -> None:
        if peer.read_request() is None:
            return
        peer.send(numbered(peer, 0))
        if peer.read_request() is not None:
            peer.send(b"HTTP/1.1 200 OK\r\nContent-Le")  # then close

    async def body(server: RawServer) -> None:
        pool = Pool(server.url)
        assert await get_body(pool) == b"conn0 req0"
        with pytest.raises(Disconnected):
            await get(pool)
        await asyncio.sleep(0.1)
        assert server.accepts == 1

    with raw_server(handler) as server:
        run(body(server))


def test_body_cut_short_raises_disconnected(run: Runner[Any]) -> None:
    def handler(peer: Peer) -> None:
        peer.read_request()
        peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 40)

    async def body(url: str) -> None:
        resp = await get(Pool(url))
        with pytest.raises(Disconnected):
            await resp.read()

    with raw_server(handler) as server:
        run(body(server.url))


def test_reset_is_not_a_clean_end_of_a_close_delimited_body(run: Runner[Any]) -> None:
    # Without Content-Length or chunks only the end of the connection ends the body: a
    # reset (RST) instead of an orderly close (FIN) means the body was cut short.
    def handler(peer: Peer) -> None:
        peer.read_request()
        peer.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"p" * 500)
        time.sleep(0.05)
        peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    async def body(url: str) -> None:
        resp = await get(Pool(url))
        with pytest.raises(Disconnected):
            await resp.read()

    with raw_server(handler) as server:
        run(body(server.url))


def test_cancelled_request_closes_its_connection(run: Runner[Any]) -> None:
    # A request cancelled while it waits for the answer (the caller's task is cancelled)
    # must not leave its connection open, outside the pool, for as long as the upstream
    # keeps it.
    def handler(peer: Peer) -> None:
        peer.read_request()
        peer.wait_eof()

    async def body(server: RawServer) -> None:
        pool = Pool(server.url)
        task = asyncio.ensure_future(get(pool))
        await _until(lambda: len(server.requests) == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await _until(lambda: server.eofs == {0}, timeout=0.5)

    with raw_server(handler) as server:
        run(body(server))

# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header Line\r\n\r\n",
    ],
    ids=["status-line", "content-length", "header-line"],
)
def test_invalid_http_raises_protocol_error(run: Runner[Any], answer: bytes) -> None:
    def handler(peer: Peer) -> None:
        peer.read_request()
        peer.send(answer)
        peer.wait_eof()

    async def body(server: RawServer) -> None:
        with pytest.raises(ProtocolError) as caught:
            await get(Pool(server.url))
        assert isinstance(caught.value, ConnectionError)
        await _until(lambda: server.eofs == {0})  # the client closed the connection

    with raw_server(handler) as server:
        run(body(server))


def test_invalid_chunk_in_body_raises_protocol_error(run: Runner[Any]) -> None:
    def handler(peer: Peer) -> None:
        peer.read_request()
        peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        time.sleep(0.05)
        peer.send(b"zz\r\nnope\r\n")
        peer.wait_eof()

    async def body(server: RawServer) -> None:
        resp = await get(Pool(server.url))
        received = []
        with pytest.raises(ProtocolError):
            async for chunk in resp.chunks():
                received.append(chunk)
        assert received == [b"hello"]
        await _until(lambda: server.eofs == {0})

    with raw_server(handler) as server:
        run(body(server))


def test_connection_refused_raises_connect_failed(run: Runner[Any]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed

    async def body() -> None:
        with pytest.raises(ConnectFailed) as caught:
            await get(Pool(f"http://127.0.0.1:{port}"))
        assert isinstance(caught.value, ConnectionError)

    run(body())


def test_connect_timeout(run: Runner[Any]) -> None:
    # A listener whose backlog is full: the kernel drops further SYNs, so connecting hangs.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(2):  # a listen(0) queue takes one; make sure it is full
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.05)

        async def body() -> None:
            began = time.monotonic()
            with pytest.raises(ConnectTimeout) as caught:
                await get(Pool(f"http://127.0.0.1:{port}", connect_timeout=0.2))
            assert isinstance(caught.value, TimeoutError)
            assert 0.15 < time.monotonic() - began < 2.0

        try:
            run(body())
        finally:
            for filler in fillers:
                filler.close()


def test_read_timeout_before_headers(run: Runner[Any]) -> None:
    def handler(peer: Peer) -> None:
        peer.read_request()
        peer.wait_eof()  # never answers

    async def body(server: RawServer) -> None:
        began = time.monotonic()
        with pytest.raises(ReadTimeout) as caught:
            await get(Pool(server.url), read_timeout=0.2)
        assert isinstance(caught.value, TimeoutError)
        assert 0.15 < time.monotonic() - began < 2.0
        await _until(lambda: server.eofs == {0})  # the client closed the stalled connection

    with raw_server(handler) as server:
        run(body(server))


@pytest.mark.parametrize("framing", ["content-length", "chunked", "connection-close"])
def test_read_timeout_in_the_middle_of_the_body(run: Runner[Any], framing: str) -> None:
    head = {
        "content-length": b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
        "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1f4\r\n",
        "connection-close": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
    }[framing]

    def handler(peer: Peer) -> None:
        peer.read_request()
        peer.send(head + b"h" * 500)  # half the body, then silence
        peer.wait_eof()

    async def body(server: RawServer) -> None:
        resp = await get(Pool(server.url), read_timeout=0.2)
        received = []
        began = time.monotonic()
        with pytest.raises(ReadTimeout):
            async for chunk in resp.chunks():
                received.append(chunk)
        assert b"".join(received) == b"h" * 500
        assert 0.15 < time.monotonic() - began < 2.0
        await _until(lambda: server.eofs == {0})

    with raw_server(handler) as server:
        run(body(server))


def test_read_timeout_is_per_silence_not_per_body(run: Runner[Any]) -> None:
    def handler(peer: Peer) -> None:
        peer.read_request()
        pieces = [b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n"] + [b"s"] * 6
        peer.send(*pieces, pause=0.08)  # 0.48 s in all, never 0.25 s silent
        peer.wait_eof()

    async def body(url: str) -> None:
        resp = await get(Pool(url), read_timeout=0.25)
        assert await resp.read() == b"ssssss"

    with raw_server(handler) as server:
        run(body(server.url))


# --- flow control -----------------------------------------------------------------------------


def test_large_body_read_slowly_pauses_reading(run: Runner[Any]) -> None:
    big = random.Random(7).randbytes(8 * 1024 * 1024)

    def handler(peer: Peer) -> None:
        peer.read_request()
        peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big) + big)
        peer.wait_eof()

    async def body(url: str) -> None:
        resp = await get(Pool(url))
        transport = resp._conn.transport
        assert transport is not None
        # A consumer that does not read: the client stops reading past the high mark.
        await asyncio.sleep(0.3)
        assert HIGH_WATER < resp._buffered <= HIGH_WATER + MAX_READ
        assert not transport.is_reading()
        received = []
        peak = resp._buffered
        async for chunk in resp.chunks():
            received.append(chunk)
            await asyncio.sleep(0.002)  # slowly
            peak = max(peak, resp._buffered)
        assert peak <= HIGH_WATER + MAX_READ
        assert b"".join(received) == big

    with raw_server(handler) as server:
        run(body(server.url))


def test_complete_answer_released_while_paused_leaves_a_reading_connection(run: Runner[Any]) -> None:
    """An answer that arrived whole but was read only in part (a HEAD, a client that went
    away) goes back to the pool reading again: the next request on it gets its answer."""
    first = b"x" * (HIGH_WATER + 1000)  # the read that completes it crosses the high mark

    def handler(peer: Peer) -> None:
        peer.read_request()
        peer.send(ok(first))
        peer.read_request()
        peer.send(ok(b"second"))
        peer.wait_eof()

    async def body(url: str) -> None:
        pool = Pool(url)
        resp = await get(pool)
        await _until(lambda: resp._complete)
        assert resp._paused  # the situation under test
        resp.release()  # nothing read
        second = await get(pool, read_timeout=2.0)
        assert await second.read() == b"second"
        pool.close()

    with raw_server(handler) as server:
        run(body(server.url))
        assert server.accepts == 1  # the same connection, reused


# --- no header injection ------------------------------------------------------------------


INJECTIONS: list[tuple[str, dict[str, str]]] = [
    ("/api v1/query", {}),
    ("/api/v1/query\r\nX-Evil: 1", {}),
    ("/api/v1/query\nX-Evil: 1", {}),
    ("/x", {"X-A": "v\r\nX-Evil: 1"}),
    ("/x", {"X-A": "v\nX-Evil: 1"}),
    ("/x", {"X-A": "v\rX-Evil: 1"}),
    ("/x", {"X-A\r\nX-Evil": "1"}),
    ("/x", {"X-A\n": "1"}),
    ("/x", {"X-Evil: 1\r\nX-A": "1"}),
]


def test_header_injection_is_refused_before_sending(run: Runner[Any]) -> None:
    async def body(server: RawServer) -> None:
        pool = Pool(server.url)
        for path, headers in INJECTIONS:
            for method, payload in (("GET", None), ("POST", b"a=1")):
                with pytest.raises(ValueError):
                    await pool.request(method, path, headers, payload, 5)
                    pytest.fail(f"sent {method} {path!r} {headers!r}")
        await asyncio.sleep(0.05)
        assert server.accepts == 0  # nothing was sent: no connection even
        assert await get_body(pool) == b"conn0 req0"  # the pool is fine afterwards

    with raw_server(serve_all(numbered)) as server:
        run(body(server))
        assert len(server.requests) == 1
