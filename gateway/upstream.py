"""The Prometheus instances behind the gateway: a sticky primary, failover, and a health check.

Every request goes to the *active* instance, which is the primary (the first of
PROMETHEUS_URLS) unless it has failed. A connection error, a timeout or a 5xx that is
not a query's own fault (Prometheus answers 503 ``timeout`` for a slow query: running it
again elsewhere would only double the load) makes the next instance active, and the
request is retried there. The active instance then stays active ("sticky"): results do
not alternate between instances, whose data differ slightly. A background health check
(``/-/ready``) brings the primary back once it has answered ready twice in a row.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import select
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from common.errors import UpstreamError, UpstreamTimeout
from gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)

# Prometheus's own query errors: the query's fault, not the instance's.
_QUERY_ERROR_TYPES = frozenset({"timeout", "canceled", "execution", "bad_data"})
HEALTHY_CHECKS_TO_RETURN = 2


class _ConnectFailed(Exception):
    """The TCP (or TLS) connection could not be made; ``cause`` says why."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Pool:
    """Keep-alive ``http.client`` connections to one upstream, reused last-in first-out.

    The standard library's client rather than urllib3: the same HTTP/1.1 parser (urllib3
    uses it too), without urllib3's layers (pool bookkeeping, Timeout objects, response
    wrapper, decoders), which cost about 0.1-0.2 ms per request here (docs/gateway.md).
    """

    def __init__(self, url: str, size: int, connect_timeout: float) -> None:
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError(f"upstream URL without a host: {url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._size = size
        self._connect_timeout = connect_timeout
        self._context = ssl.create_default_context() if self._https else None
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def get(self) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection still open (reused=True), else a new, connected one."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                break
            if _usable(conn):
                return conn, True
            conn.close()
        return self.fresh(), False

    def fresh(self) -> http.client.HTTPConnection:
        """A new connection, connected (so a failure here is a connection failure)."""
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=self._connect_timeout, context=self._context)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._connect_timeout)
        try:
            conn.connect()
        except OSError as exc:
            conn.close()
            raise _ConnectFailed(exc) from exc
        return conn

    def put(self, conn: http.client.HTTPConnection) -> None:
        """Keep an idle connection whose last response was read to the end."""
        with self._lock:
            if len(self._idle) < self._size:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _usable(conn: http.client.HTTPConnection) -> bool:
    """An idle connection is usable if open and silent: readable means closed by the server."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


class _Exchange:
    """One request's response on a pooled connection; the connection goes back to the
    pool only if the body was read to the end and the server keeps the connection open."""

    __slots__ = ("_conn", "_done", "_pool", "resp")

    def __init__(self, pool: _Pool, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        self._pool = pool
        self._conn = conn
        self.resp = resp
        self._done = False

    def read_all(self) -> bytes:
        return self.resp.read()

    def chunks(self, size: int) -> Iterator[bytes]:
        while chunk := self.resp.read1(size):
            yield chunk
        # read1 leaves a fully read Content-Length response open; read() marks it done.
        self.resp.read()

    def release(self) -> None:
        if self._done:
            return
        self._done = True
        if self.resp.isclosed() and not self.resp.will_close:
            self._pool.put(self._conn)
        else:
            self._conn.close()


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    """An upstream answer; ``body`` is set when it was read already, else ``stream()`` it."""

    status: int
    headers: http.client.HTTPMessage  # case-insensitive .get(), as Prometheus sent them
    response: _Exchange
    body: bytes | None = None
    instance: int = 0

    def stream(self, chunk: int = 64 * 1024) -> Iterator[bytes]:
        """The body as sent (still compressed, if it was), then the connection goes back to the pool."""
        try:
            if self.body is not None:
                yield self.body
                return
            yield from self.response.chunks(chunk)
        finally:
            self.close()

    def read(self) -> bytes:
        """The whole body, decompressed."""
        try:
            body = self.body if self.body is not None else self.response.read_all()
            return _decode(body, self.headers.get("Content-Encoding"))
        finally:
            self.close()

    def close(self) -> None:
        self.response.release()


def _decode(body: bytes, encoding: str | None) -> bytes:
    if encoding and encoding.lower() == "gzip":
        import gzip

        return gzip.decompress(body)
    return body


class Upstreams:
    def __init__(
        self,
        urls: Sequence[str],
        metrics: GatewayMetrics,
        connect_timeout: float = 2.0,
        read_timeout: float = 35.0,
        health_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        pool_size: int = 32,
    ) -> None:
        if not urls:
            raise ValueError("at least one upstream URL is needed")
        self.urls = tuple(u.rstrip("/") for u in urls)
        self._metrics = metrics
        self._timeout = (connect_timeout, read_timeout)
        self._health_interval = health_interval
        self._clock = clock
        # http.client directly (not requests or urllib3): less CPU per proxied request, and
        # no proxy settings picked up from the environment. Keep-alive pools, one per upstream.
        self._pools = [_Pool(u, pool_size, connect_timeout) for u in self.urls]
        self._prefixes = [urlsplit(u).path.rstrip("/") for u in self.urls]
        self._lock = threading.Lock()
        self._active = 0
        self._healthy_streak = 0
        self._checker: threading.Thread | None = None
        self._stop = threading.Event()
        self._pid: int | None = None
        metrics.upstream_active.set(0)

    @property
    def active(self) -> int:
        return self._active

    def request(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> UpstreamResponse:
        """Send to the active instance, failing over in order; raise UpstreamError if none answers."""
        self._ensure_checker()
        start = self._active
        order = [start] + [i for i in range(len(self.urls)) if i != start]
        last_error: Exception | None = None
        read_timeout = self._timeout[1] if timeout is None else timeout
        for position, index in enumerate(order):
            is_last = position == len(order) - 1
            began = time.perf_counter()
            try:
                exchange = self._send(index, method, path, params, headers, read_timeout)
            except _ConnectFailed as exc:
                last_error = exc.cause
                self._record_failure(index, "timeout" if isinstance(exc.cause, TimeoutError) else "connection")
                continue
            except TimeoutError as exc:
                last_error = exc
                self._record_failure(index, "timeout")
                continue
            except (http.client.HTTPException, OSError) as exc:
                last_error = exc
                self._record_failure(index, "connection")
                continue
            finally:
                self._metrics.upstream_seconds.labels(str(index)).observe(time.perf_counter() - began)
            resp = exchange.resp
            if resp.status >= 500:
                try:
                    body = exchange.read_all()  # error bodies are small; read to classify
                except (http.client.HTTPException, OSError) as exc:
                    exchange.release()
                    last_error = exc
                    self._record_failure(index, "connection")
                    continue
                answer = UpstreamResponse(resp.status, resp.headers, exchange, body, index)
                if _is_query_error(_decode(body, resp.headers.get("Content-Encoding"))) or is_last:
                    return answer
                answer.close()
                last_error = UpstreamError(f"upstream answered {resp.status}")
                self._record_failure(index, f"http_{resp.status}")
                continue
            self._make_active(index)
            return UpstreamResponse(resp.status, resp.headers, exchange, None, index)
        if isinstance(last_error, TimeoutError):
            raise UpstreamTimeout("Prometheus did not answer in time") from last_error
        raise UpstreamError("no Prometheus instance is available") from last_error

    def _send(
        self,
        index: int,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]],
        headers: Mapping[str, str] | None,
        read_timeout: float,
    ) -> _Exchange:
        url = self._prefixes[index] + path
        sent = dict(headers or {})
        encoded = urlencode(list(params))
        body = None
        if method == "POST":
            body = encoded.encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        elif encoded:
            url += "?" + encoded
        pool = self._pools[index]
        conn, reused = pool.get()
        try:
            return _exchange(pool, conn, method, url, body, sent, read_timeout)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            if not reused:
                raise
        # The server closed the kept-alive connection just as it was reused (no answer
        # was read): send once more on a new connection. Only reads are proxied.
        return _exchange(pool, pool.fresh(), method, url, body, sent, read_timeout)

    def _record_failure(self, index: int, reason: str) -> None:
        log.warning("upstream failed", extra={"upstream": index, "reason": reason})
        with self._lock:
            if index == self._active:
                self._active = (index + 1) % len(self.urls)
                self._healthy_streak = 0
                self._metrics.failovers.labels(reason).inc()
                self._metrics.upstream_active.set(self._active)

    def _make_active(self, index: int) -> None:
        if index != self._active:
            with self._lock:
                self._active = index
                self._healthy_streak = 0
                self._metrics.upstream_active.set(index)

    # --- health check -------------------------------------------------------------

    def check_health(self) -> None:
        """One health-check round: bring back the first instance ready twice in a row."""
        if self._active == 0:
            return
        for index in range(self._active):
            try:
                exchange = self._send(index, "GET", "/-/ready", (), {"User-Agent": "tenant-metrics-gateway"}, self._timeout[1])
                try:
                    exchange.read_all()
                finally:
                    exchange.release()
                ready = exchange.resp.status == 200
            except (_ConnectFailed, http.client.HTTPException, OSError):
                ready = False
            if ready:
                with self._lock:
                    self._healthy_streak += 1
                    if self._healthy_streak >= HEALTHY_CHECKS_TO_RETURN:
                        log.info("upstream is back", extra={"upstream": index})
                        self._active = index
                        self._healthy_streak = 0
                        self._metrics.upstream_active.set(index)
                return
        with self._lock:
            self._healthy_streak = 0

    def _ensure_checker(self) -> None:
        # Started lazily, in the process that serves requests (gunicorn forks after import).
        if self._checker is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._checker is not None and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._checker = threading.Thread(target=self._run_checker, name="upstream-health", daemon=True)
            self._checker.start()

    def _run_checker(self) -> None:
        while not self._stop.wait(self._health_interval):
            try:
                self.check_health()
            except Exception:
                log.exception("health check failed")

    def close(self) -> None:
        self._stop.set()
        for pool in self._pools:
            pool.close()


def _exchange(
    pool: _Pool,
    conn: http.client.HTTPConnection,
    method: str,
    url: str,
    body: bytes | None,
    headers: dict[str, str],
    read_timeout: float,
) -> _Exchange:
    """Send one request on ``conn`` and read the status and headers; the body is left to the caller."""
    try:
        if conn.sock is not None:
            conn.sock.settimeout(read_timeout)
        conn.request(method, url, body=body, headers=headers)  # headers and body in one send
        return _Exchange(pool, conn, conn.getresponse())
    except BaseException:
        conn.close()
        raise


def _is_query_error(body: bytes) -> bool:
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    return isinstance(parsed, dict) and parsed.get("errorType") in _QUERY_ERROR_TYPES
