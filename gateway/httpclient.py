"""A lean HTTP/1.1 client for the upstream requests: asyncio protocols around httptools.

Why not aiohttp's client: measured here, it cost about 0.4 ms of CPU per proxied query,
most of what the gateway spent on a request (docs/gateway.md, "Where the time goes").
The gateway sends one kind of request (a GET or a form POST it built itself, to the
fixed PROMETHEUS_URLS) and relays the answer's body as it is, so it needs little: a
keep-alive pool per upstream and a response parser. The parser is httptools (llhttp,
Node.js's parser, in C): framing (Content-Length, chunked, keep-alive) is never parsed
by hand here.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import cast
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

# Flow control: stop reading from the upstream while this much of its body waits for a
# slow client, and read again below the low mark.
HIGH_WATER = 512 * 1024
LOW_WATER = 64 * 1024


class ConnectFailed(ConnectionError):
    """The TCP (or TLS) connection could not be made."""


class ConnectTimeout(TimeoutError):
    """The TCP (or TLS) connection was not made within the connect timeout."""


class Disconnected(ConnectionError):
    """The connection closed before the answer was complete."""


class ReadTimeout(TimeoutError):
    """The upstream went silent for longer than the read timeout."""


class ProtocolError(ConnectionError):
    """The upstream's answer is not valid HTTP/1.1."""


class Response:
    """One answer: status and headers first, then the body as it arrives."""

    def __init__(self, conn: _Connection, read_timeout: float) -> None:
        self._conn = conn
        self._loop = conn.loop
        self._read_timeout = read_timeout
        self.status = 0
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())
        self._raw_headers: list[tuple[str, str]] = []
        self._headers_done: asyncio.Future[None] = self._loop.create_future()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._complete = False
        self._keep_alive = False
        self._error: BaseException | None = None
        self._released = False
        self.received_any = False

    # --- called by the connection -------------------------------------------------------

    def _on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def _on_headers(self, status: int, keep_alive: bool) -> None:
        self.status = status
        self._keep_alive = keep_alive
        self.headers = CIMultiDictProxy(CIMultiDict(self._raw_headers))
        if not self._headers_done.done():
            self._headers_done.set_result(None)

    def _on_body(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > HIGH_WATER and not self._paused:
            self._paused = True
            self._conn.pause()
        self._wake()

    def _on_complete(self) -> None:
        self._complete = True
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if self._complete or self._error is not None:
            return
        self._error = error
        if not self._headers_done.done():
            self._headers_done.set_exception(error)
            self._headers_done.exception()  # retrieved: no "never retrieved" warning if unawaited
        self._wake()

    def _on_lost(self, exc: BaseException | None) -> None:
        # Only an orderly close (no exc) ends a body delimited by the end of the connection.
        if exc is None and self._error is None and self._headers_done.done() and not self._complete \
                and self._eof_delimited():
            self._keep_alive = False
            self._on_complete()  # a body delimited by the end of the connection
            return
        self._fail(Disconnected(str(exc) if exc else "the upstream closed the connection"))

    def _eof_delimited(self) -> bool:
        h = self.headers
        return "Content-Length" not in h and "chunked" not in h.get("Transfer-Encoding", "").lower()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _on_timeout(self) -> None:
        self._fail(ReadTimeout(f"no answer within {self._read_timeout:g}s"))
        self._conn.close()

    # --- used by the caller -------------------------------------------------------------

    async def wait_headers(self) -> None:
        timer = self._loop.call_later(self._read_timeout, self._on_timeout)
        try:
            await self._headers_done
        finally:
            timer.cancel()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as sent (still compressed, if it was); then the connection is released."""
        try:
            while True:
                while self._chunks:
                    chunk = self._chunks.popleft()
                    self._buffered -= len(chunk)
                    if self._paused and self._buffered < LOW_WATER:
                        self._paused = False
                        self._conn.resume()
                    yield chunk
                if self._complete:
                    return
                if self._error is not None:
                    raise self._error
                self._waiter = self._loop.create_future()
                timer = self._loop.call_later(self._read_timeout, self._on_timeout)
                try:
                    await self._waiter
                finally:
                    timer.cancel()
                    self._waiter = None
        finally:
            self.release()

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    def release(self) -> None:
        """Back to the pool if the answer was read to the end on a kept-alive connection."""
        if self._released:
            return
        self._released = True
        if self._complete and self._keep_alive and self._error is None:
            if self._paused:  # the whole answer is in, some of it unread: read again
                self._paused = False
                self._conn.resume()
            self._conn.finished()
        else:
            self._conn.close()


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one exchange at a time."""

    def __init__(self, pool: Pool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.response: Response | None = None
        self.lost = False
        self._parser = httptools.HttpResponseParser(self)

    def send(self, data: bytes, read_timeout: float) -> Response:
        assert self.transport is not None
        self.response = Response(self, read_timeout)
        self.transport.write(data)
        return self.response

    def finished(self) -> None:
        self.response = None
        if not self.lost:
            self.pool.put(self)  # the parser reads the next answer on this connection as well

    def pause(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # an idle connection has nothing to say: drop it
            self.close()
            return
        response.received_any = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            response._fail(ProtocolError(f"invalid HTTP from the upstream: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.pool.discard(self)
        if self.response is not None:
            self.response._on_lost(exc)

    # --- httptools callbacks ------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        self.response._on_header(name, value)

    def on_headers_complete(self) -> None:
        assert self.response is not None
        self.response._on_headers(self._parser.get_status_code(), self._parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        self.response._on_body(body)

    def on_message_complete(self) -> None:
        assert self.response is not None
        self.response._on_complete()


class Pool:
    """Kept-alive connections to one upstream (``scheme://host:port``), reused last in, first out."""

    def __init__(self, url: str, size: int = 64, connect_timeout: float = 2.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL with a host: {url!r}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        default_port = self.port == (443 if self.https else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if default_port else f"{host}:{self.port}"
        self.prefix = parts.path.rstrip("/")
        self._size = size
        self._connect_timeout = connect_timeout
        self._ssl = ssl.create_default_context() if self.https else None
        self._idle: list[_Connection] = []

    async def request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes | None,
        read_timeout: float,
    ) -> Response:
        """Send one request; return once the status and headers are in (the body follows)."""
        data = _serialize(method, self.prefix + path, self.host_header, headers, body)
        conn, reused = await self._acquire()
        response = conn.send(data, read_timeout)
        try:
            await _headers_or_release(response)
        except Disconnected:
            if not reused or response.received_any:
                raise
            # The upstream closed the kept-alive connection just as it was reused (nothing
            # was answered): send once more on a new connection. Only reads are proxied.
            conn = await self._connect()
            response = conn.send(data, read_timeout)
            await _headers_or_release(response)
        return response

    async def _acquire(self) -> tuple[_Connection, bool]:
        while self._idle:
            conn = self._idle.pop()
            if not conn.lost:
                return conn, True
        return await self._connect(), False

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(self, loop), self.host, self.port,
                    ssl=self._ssl, server_hostname=self.host if self._ssl else None,
                ),
                self._connect_timeout,
            )
        except TimeoutError as exc:
            raise ConnectTimeout(f"could not connect within {self._connect_timeout:g}s") from exc
        except OSError as exc:
            raise ConnectFailed(str(exc)) from exc
        return conn

    def put(self, conn: _Connection) -> None:
        if len(self._idle) < self._size and not conn.lost:
            self._idle.append(conn)
        else:
            conn.close()

    def discard(self, conn: _Connection) -> None:
        if conn in self._idle:
            self._idle.remove(conn)

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


async def _headers_or_release(response: Response) -> None:
    """Wait for the answer's head; on any failure or cancellation, give the connection up
    (an answer still on its way must not be read as the next request's)."""
    try:
        await response.wait_headers()
    except BaseException:
        response.release()
        raise


def _serialize(method: str, target: str, host: str, headers: Mapping[str, str], body: bytes | None) -> bytes:
    """The request head, from values the gateway built itself (checked: no CR/LF, no spaces)."""
    if method not in ("GET", "POST"):
        raise ValueError(f"unsupported method: {method[:16]!r}")
    if not target.startswith("/") or any(c in target for c in " \r\n"):
        raise ValueError(f"invalid request target: {target[:80]!r}")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    for name, value in headers.items():
        if any(c in name or c in value for c in "\r\n") or ":" in name:
            raise ValueError(f"invalid header {name!r}")
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if body else head
