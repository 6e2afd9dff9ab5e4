"""The Prometheus instances behind the gateway: a sticky primary, failover, and a health check.

Every request goes to the *active* instance, which is the primary (the first of
PROMETHEUS_URLS) unless it has failed. A connection error, a timeout or a 5xx that is
not a query's own fault (Prometheus answers 503 ``timeout`` for a slow query: running it
again elsewhere would only double the load) makes the next instance active, and the
request is retried there. The active instance then stays active ("sticky"): results do
not alternate between instances, whose data differ slightly. A background health check
(``/-/ready``) brings the primary back once it has answered ready twice in a row.

A stalled instance (a GC or disk stall, SIGSTOP: connections are accepted, nothing is
answered) is found without waiting out the long query timeout. Prometheus sends no byte
before it has evaluated the whole query, so a late first byte alone proves nothing; it
starts a check instead: a request with no response head after ``ttfb_timeout`` seconds
probes ``/-/ready`` on ``probe_timeout`` (one probe per instance at a time, shared by every
request waiting on it). Any HTTP answer means the instance is alive and the query is just
slow: the request keeps waiting. No answer means a stall: the request is given up and
sent to the next instance, which becomes active (sticky, as for any failure). The health
check also probes the primary, while it is active, every ``health_interval`` on the short
timeout, so a stall is usually found before many requests run into it.

Requests go out on keep-alive pools per instance (gateway/httpclient.py) on the worker's
event loop; bodies are passed through as sent (never decompressed on the way).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlencode

from multidict import CIMultiDictProxy

from gateway.httpclient import Pool, Response
from gateway.metrics import GatewayMetrics
from tenant_metrics.core.errors import UpstreamError, UpstreamTimeout

log = logging.getLogger(__name__)

# Prometheus's own query errors: the query's fault, not the instance's.
_QUERY_ERROR_TYPES = frozenset({"timeout", "canceled", "execution", "bad_data"})
HEALTHY_CHECKS_TO_RETURN = 2
_FORM = "application/x-www-form-urlencoded"
_PROBE_HEADERS = {"User-Agent": "tenant-metrics-gateway"}


class UpstreamStalled(TimeoutError):
    """No response head within the TTFB budget, and the instance's probe went unanswered."""


@dataclass(slots=True)
class UpstreamResponse:
    """An upstream answer; ``body`` is set when it was read already, else ``chunks()`` it."""

    status: int
    headers: CIMultiDictProxy[str]  # case-insensitive .get(), as Prometheus sent them
    response: Response
    body: bytes | None = None
    instance: int = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as sent (still compressed, if it was); the connection then goes back to the pool."""
        try:
            if self.body is not None:
                yield self.body
                return
            async for chunk in self.response.chunks():
                yield chunk
        finally:
            self.close()

    async def read(self) -> bytes:
        """The whole body, decompressed."""
        try:
            body = self.body if self.body is not None else await self.response.read()
            return _decode(body, self.headers.get("Content-Encoding"))
        finally:
            self.close()

    def close(self) -> None:
        self.response.release()


def _decode(body: bytes, encoding: str | None) -> bytes:
    if encoding and encoding.lower() == "gzip":
        return gzip.decompress(body)
    return body


class Upstreams:
    """The instances, in order; ``start()`` and ``close()`` run on the serving event loop."""

    def __init__(
        self,
        urls: Sequence[str],
        metrics: GatewayMetrics,
        connect_timeout: float = 2.0,
        read_timeout: float = 35.0,
        health_interval: float = 5.0,
        pool_size: int = 64,
        ttfb_timeout: float = 2.0,
        probe_timeout: float = 1.0,
    ) -> None:
        if not urls:
            raise ValueError("at least one upstream URL is needed")
        self.urls = tuple(u.rstrip("/") for u in urls)
        self._metrics = metrics
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._health_interval = health_interval
        self._ttfb_timeout = ttfb_timeout
        self._probe_timeout = probe_timeout
        self._probes: dict[int, asyncio.Future[bool]] = {}
        self._pools = [Pool(u, pool_size, connect_timeout) for u in self.urls]
        self._checker: asyncio.Task[None] | None = None
        self._active = 0
        self._healthy_streak = 0
        self._streak_index = -1  # the instance the streak counts ready answers of
        metrics.upstream_active.set(0)

    @property
    def active(self) -> int:
        return self._active

    async def start(self) -> None:
        """Start the health check, on the serving event loop (in the worker, after fork)."""
        if self._checker is None:
            self._checker = asyncio.create_task(self._run_checker(), name="upstream-health")

    async def close(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            try:
                await self._checker
            except asyncio.CancelledError:
                pass
            self._checker = None
        for pool in self._pools:
            pool.close()

    async def request(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> UpstreamResponse:
        """Send to the active instance, failing over in order; raise UpstreamError if none answers."""
        if self._checker is None:
            await self.start()
        start = self._active
        order = [start] + [i for i in range(len(self.urls)) if i != start]
        last_error: Exception | None = None
        read_timeout = self._read_timeout if timeout is None else timeout
        for position, index in enumerate(order):
            is_last = position == len(order) - 1
            began = time.perf_counter()
            try:
                if is_last or self._ttfb_timeout >= read_timeout:
                    resp = await self._send(index, method, path, params, headers, read_timeout)
                else:
                    resp = await self._send_watched(index, method, path, params, headers, read_timeout)
            except UpstreamStalled as exc:
                last_error = exc
                self._record_failure(index, "stall")
                continue
            except TimeoutError as exc:
                last_error = exc
                self._record_failure(index, "timeout")
                continue
            except OSError as exc:  # connection refused or reset, invalid HTTP
                last_error = exc
                self._record_failure(index, "connection")
                continue
            finally:
                self._metrics.upstream_seconds.labels(str(index)).observe(time.perf_counter() - began)
            if resp.status >= 500:
                try:
                    body = await resp.read()  # error bodies are small; read to classify
                except OSError as exc:  # TimeoutError included
                    resp.release()
                    last_error = exc
                    self._record_failure(index, "connection")
                    continue
                answer = UpstreamResponse(resp.status, resp.headers, resp, body, index)
                if _is_query_error(_decode(body, resp.headers.get("Content-Encoding"))) or is_last:
                    return answer
                answer.close()
                last_error = UpstreamError(f"upstream answered {resp.status}")
                self._record_failure(index, f"http_{resp.status}")
                continue
            self._make_active(index)
            return UpstreamResponse(resp.status, resp.headers, resp, None, index)
        if isinstance(last_error, TimeoutError):
            raise UpstreamTimeout("Prometheus did not answer in time") from last_error
        raise UpstreamError("no Prometheus instance is available") from last_error

    async def _send(
        self,
        index: int,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]],
        headers: Mapping[str, str] | None,
        read_timeout: float,
    ) -> Response:
        sent = dict(headers or {})
        encoded = urlencode(list(params))
        body = None
        if method == "POST":
            body = encoded.encode()
            sent["Content-Type"] = _FORM
        elif encoded:
            path += "?" + encoded
        return await self._pools[index].request(method, path, sent, body, read_timeout)

    async def _send_watched(
        self,
        index: int,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]],
        headers: Mapping[str, str] | None,
        read_timeout: float,
    ) -> Response:
        """``_send``, but past the TTFB budget the instance is probed: unanswered -> UpstreamStalled."""
        task = asyncio.ensure_future(self._send(index, method, path, params, headers, read_timeout))
        try:
            done, _ = await asyncio.wait({task}, timeout=self._ttfb_timeout)
            if task in done:
                return task.result()
            probe = asyncio.ensure_future(self.probe(index))
            waiting: set[asyncio.Future[Any]] = {task, probe}
            finished, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if task in finished:
                probe.cancel()  # only this waiter: the shared probe runs on for the others
                return task.result()
            if probe.result():
                return await task  # alive: the query is slow, not the instance
            log.warning("upstream stalled", extra={"upstream": index, "ttfb_timeout": self._ttfb_timeout})
            raise UpstreamStalled(f"no answer within {self._ttfb_timeout:g}s and no answer to a probe")
        finally:
            if not task.done():
                task.cancel()  # gives its connection up (httpclient._headers_or_release)
                with contextlib.suppress(BaseException):
                    await task

    async def probe(self, index: int) -> bool:
        """Does the instance answer HTTP at all (any status) within the probe timeout? One probe
        per instance at a time, shared by every caller."""
        shared = self._probes.get(index)
        if shared is None:
            shared = asyncio.ensure_future(self._answers(index))
            self._probes[index] = shared
            shared.add_done_callback(partial(self._probe_done, index))
        return await asyncio.shield(shared)

    def _probe_done(self, index: int, _future: asyncio.Future[bool]) -> None:
        self._probes.pop(index, None)

    async def _answers(self, index: int) -> bool:
        try:
            resp = await self._send(index, "GET", "/-/ready", (), _PROBE_HEADERS, self._probe_timeout)
            resp.release()  # closes it unless read to the end: the body does not matter here
            return True
        except OSError:  # TimeoutError included
            return False

    def _record_failure(self, index: int, reason: str) -> None:
        log.warning("upstream failed", extra={"upstream": index, "reason": reason})
        if index == self._active and len(self.urls) > 1:
            self._active = (index + 1) % len(self.urls)
            self._healthy_streak = 0
            self._metrics.failovers.labels(reason).inc()
            self._metrics.upstream_active.set(self._active)

    def _make_active(self, index: int) -> None:
        if index != self._active:
            self._active = index
            self._healthy_streak = 0
            self._metrics.upstream_active.set(index)

    # --- health check -------------------------------------------------------------

    async def check_health(self) -> None:
        """One health-check round: while the primary is active, probe it (no answer at all ->
        fail over); otherwise bring back the first instance ready twice in a row. (An active
        secondary that stalls is found by the requests' own TTFB check.)"""
        if self._active == 0:
            if len(self.urls) > 1 and not await self.probe(0):
                log.warning("upstream stalled", extra={"upstream": 0, "probe_timeout": self._probe_timeout})
                self._record_failure(0, "probe")
            return
        for index in range(self._active):
            try:
                resp = await self._send(
                    index, "GET", "/-/ready", (), {"User-Agent": "tenant-metrics-gateway"},
                    min(self._read_timeout, 10.0),
                )
                await resp.read()
                ready = resp.status == 200
            except OSError:  # TimeoutError included
                ready = False
            if ready:
                if self._streak_index != index:
                    self._streak_index, self._healthy_streak = index, 0
                self._healthy_streak += 1
                if self._healthy_streak >= HEALTHY_CHECKS_TO_RETURN:
                    log.info("upstream is back", extra={"upstream": index})
                    self._active = index
                    self._healthy_streak = 0
                    self._metrics.upstream_active.set(index)
                return
        self._healthy_streak = 0

    async def _run_checker(self) -> None:
        while True:
            await asyncio.sleep(self._health_interval)
            try:
                await self.check_health()
            except Exception:
                log.exception("health check failed")


def _is_query_error(body: bytes) -> bool:
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    return isinstance(parsed, dict) and parsed.get("errorType") in _QUERY_ERROR_TYPES
