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

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter

from common.errors import UpstreamError, UpstreamTimeout
from gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)

# Prometheus's own query errors: the query's fault, not the instance's.
_QUERY_ERROR_TYPES = frozenset({"timeout", "canceled", "execution", "bad_data"})
HEALTHY_CHECKS_TO_RETURN = 2


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    """An upstream answer; ``body`` is set when it was read, else ``raw`` streams it."""

    status: int
    headers: Mapping[str, str]
    response: requests.Response
    body: bytes | None = None
    instance: int = 0


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
        self._session = requests.Session()
        self._session.trust_env = False  # never route through a proxy from the environment
        adapter = HTTPAdapter(pool_connections=len(self.urls), pool_maxsize=pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
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
                resp = self._send(index, method, path, params, headers, read_timeout)
            except requests.Timeout as exc:
                last_error = exc
                self._record_failure(index, "timeout")
                continue
            except requests.RequestException as exc:
                last_error = exc
                self._record_failure(index, "connection")
                continue
            finally:
                self._metrics.upstream_seconds.labels(str(index)).observe(time.perf_counter() - began)
            if resp.status_code >= 500:
                body = resp.content  # error bodies are small; read to classify
                if _is_query_error(body) or is_last:
                    return UpstreamResponse(resp.status_code, resp.headers, resp, body, index)
                resp.close()
                last_error = UpstreamError(f"upstream answered {resp.status_code}")
                self._record_failure(index, f"http_{resp.status_code}")
                continue
            self._make_active(index)
            return UpstreamResponse(resp.status_code, resp.headers, resp, None, index)
        if isinstance(last_error, requests.Timeout):
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
    ) -> requests.Response:
        url = self.urls[index] + path
        timeout = (self._timeout[0], read_timeout)
        if method == "POST":
            return self._session.post(
                url, data=list(params), headers=dict(headers or {}), timeout=timeout, stream=True,
                allow_redirects=False,
            )
        return self._session.get(
            url, params=list(params), headers=dict(headers or {}), timeout=timeout, stream=True,
            allow_redirects=False,
        )

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
                resp = self._session.get(self.urls[index] + "/-/ready", timeout=self._timeout)
                ready = resp.status_code == 200
                resp.close()
            except requests.RequestException:
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
        import os

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
            except Exception:  # noqa: BLE001 - the checker must never die
                log.exception("health check failed")

    def close(self) -> None:
        self._stop.set()
        self._session.close()


def _is_query_error(body: bytes) -> bool:
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    return isinstance(parsed, dict) and parsed.get("errorType") in _QUERY_ERROR_TYPES
