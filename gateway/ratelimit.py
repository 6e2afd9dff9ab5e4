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

    def refund(self, key: str) -> None:
        """Give back a token taken for ``key`` (up to the burst)."""
        with self._lock:
            entry = self._buckets.get(key)
            if entry is not None:
                self._buckets[key] = (min(self._burst, entry[0] + 1.0), entry[1])


class FailureBudget:
    """Database lookups of credentials not yet verified, per client address and per
    username + address; a lookup that verifies gives its token back, so only refusals
    (and lookups still under way) spend the budget.

    Reserved before the database is asked, so a flood of concurrent requests cannot
    overshoot it while their lookups queue. A client that spent it gets 429 without a
    database round trip. Verified credentials never reach it (gateway/gatekeeper.py), and
    the username budget is keyed on the address too, so a flood from elsewhere can never
    lock a tenant's username out."""

    def __init__(self, per_address: RateLimiter, per_user: RateLimiter) -> None:
        self._address = per_address
        self._user = per_user

    @staticmethod
    def _user_key(address: str, username: str) -> str:
        return f"{username}\x00{address}"

    def reserve(self, address: str, username: str | None) -> None:
        """Take one lookup from both budgets, or raise TooManyRequests (with the seconds to wait)."""
        try:
            self._address.take(address)
        except TooManyRequests as exc:
            raise TooManyRequests("too many failed authentications from this address",
                                  retry_after=exc.retry_after) from None
        if username is not None:
            try:
                self._user.take(self._user_key(address, username))
            except TooManyRequests as exc:
                self._address.refund(address)
                raise TooManyRequests("too many failed authentications for this username from this address",
                                      retry_after=exc.retry_after) from None

    def release(self, address: str, username: str | None) -> None:
        """The lookup verified the credential (or never reached a verdict): give the tokens back."""
        self._address.refund(address)
        if username is not None:
            self._user.refund(self._user_key(address, username))
