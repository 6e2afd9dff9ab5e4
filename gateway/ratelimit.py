"""Per-credential token buckets: one tenant's dashboards cannot starve the others."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tenant_metrics.core.errors import TooManyRequests

MAX_BUCKETS = 50000


class RateLimiter:
    """``rate`` tokens per second, up to ``burst``; each request takes one."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)
        self._lock = threading.Lock()

    def take(self, key: str) -> None:
        """Take a token for ``key`` or raise TooManyRequests with the seconds to wait."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - last) * self._rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) / self._rate
                raise TooManyRequests("rate limit exceeded for these credentials", retry_after=wait)
            if len(self._buckets) >= MAX_BUCKETS and key not in self._buckets:
                self._buckets.clear()  # bounded memory; forgetting only ever grants a fresh burst
            self._buckets[key] = (tokens - 1.0, now)
