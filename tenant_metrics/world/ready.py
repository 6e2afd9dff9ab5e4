"""Bounded waits: until a check passes, an HTTP endpoint answers, Prometheus holds series."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests

from tenant_metrics.world.errors import NotReady

T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout: float, what: str, *, interval: float = 0.2,
               alive: Callable[[], None] | None = None) -> T:
    """Call ``check`` until it returns something truthy (returned) or ``timeout`` passes.

    Exceptions from ``check`` count as "not yet" (the thing is still starting); the last one
    is named in the NotReady. ``alive`` is called first on every round and may raise (a
    child process that exited will never become ready)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        if alive is not None:
            alive()
        try:
            last = check()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - still starting; the timeout reports it
            last = exc
        if time.monotonic() >= deadline:
            raise NotReady(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def wait_http(url: str, timeout: float = 30.0, *, ok: Callable[[requests.Response], bool] | None = None,
              auth: tuple[str, str] | None = None, request_timeout: float = 2.0,
              alive: Callable[[], None] | None = None, **kwargs: Any) -> requests.Response:
    """Poll ``url`` with GET until it answers 2xx (or ``ok``); the answer is returned."""

    answers: list[requests.Response] = []

    def answered() -> bool:
        resp = requests.get(url, timeout=request_timeout, auth=auth, **kwargs)
        if (ok or (lambda r: r.ok))(resp):
            answers.append(resp)  # a Response is falsy unless 2xx: keep it aside, return True
            return True
        raise NotReady(f"HTTP {resp.status_code}")

    wait_until(answered, timeout, url, interval=0.1, alive=alive)
    return answers[0]


def wait_for_series(url: str, query: str, expected: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Wait until the instant ``query`` on the Prometheus API at ``url`` returns ``expected`` series or more."""

    def enough() -> list[dict[str, Any]]:
        resp = requests.get(url + "/api/v1/query", params={"query": query}, timeout=5)
        result: list[dict[str, Any]] = resp.json()["data"]["result"]
        if len(result) >= expected:
            return result
        raise NotReady(f"{len(result)} series, wanted {expected}")

    return wait_until(enough, timeout, f"{query!r} on {url}", interval=0.25)
