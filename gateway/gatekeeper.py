"""Who is asking, and may they ask now: credentials, the failure budget, then the rate limit.

The order is what keeps a flood of wrong credentials cheap and harmless to others:

1. a credential verified less than a second ago: admitted from memory, never throttled;
2. a credential verified within the stale-if-error window: looked up again, never
   throttled by the failure budget (so a flood from a tenant's own address cannot lock
   it out), and served from memory if the database cannot be reached (at once while the
   database is known to be failing; a lookup still runs, to notice its return);
3. anything else: refused without I/O if it cannot be a broker-issued credential (or the
   database said a moment ago that the username does not exist), then 429 if this client
   address (or username + address) spent its budget of refused lookups
   (gateway/ratelimit.FailureBudget), and only then a database lookup, bounded in time
   (gateway/lookups.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial

from gateway.auth import Authenticator, Tenant, UnknownUsername
from gateway.lookups import LookupBusy, LookupRunner, LookupTimeout
from gateway.metrics import GatewayMetrics
from gateway.ratelimit import FailureBudget, RateLimiter
from tenant_metrics.core.errors import TooManyRequests, Unauthenticated, UpstreamError

log = logging.getLogger("gateway.auth")


class Gatekeeper:
    def __init__(
        self,
        authenticator: Authenticator,
        limiter: RateLimiter,
        metrics: GatewayMetrics,
        budget: FailureBudget | None = None,
        runner: LookupRunner | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.limiter = limiter
        self.metrics = metrics
        self.budget = budget
        self.runner = runner or LookupRunner()
        # One lookup for all the requests that arrive with a header while it is looked up.
        self._pending: dict[str, tuple[asyncio.Future[Tenant], float]] = {}  # header -> (lookup, started)
        self.serving_stale = False
        self._stale_answers = 0

    async def authenticate(self, header: str | None, client: str | None = None) -> Tenant:
        tenant = self.authenticator.cached(header)
        if tenant is not None:
            return tenant
        assert header  # cached() refuses a missing header
        known = self.authenticator.recently_verified(header)
        username: str | None = None
        if not known:
            try:
                username = self.authenticator.precheck(header).username
            except Unauthenticated as exc:
                reason = "unknown_username" if isinstance(exc, UnknownUsername) else "shape"
                self.metrics.auth_refused_early.labels(reason).inc()
                raise
        budget = self.budget if client is not None and not known else None
        if budget is not None:
            assert client is not None
            try:
                budget.reserve(client, username)
            except TooManyRequests:
                self.metrics.auth_throttled.inc()
                raise
        refused = False
        try:
            return await self._shared_lookup(header, known)
        except Unauthenticated:
            refused = True
            raise
        finally:
            if budget is not None and not refused:
                assert client is not None
                budget.release(client, username)

    async def _shared_lookup(self, header: str, known: bool) -> Tenant:
        entry = self._pending.get(header)
        if entry is None or entry[1] < self.runner.answered_at:
            # (A lookup that started before the database last answered may be stuck in a
            # partition that has healed since: not worth joining.)
            started = time.monotonic()
            pending: asyncio.Future[Tenant] = asyncio.ensure_future(self._lookup(header, started))
            self._pending[header] = (pending, started)
            pending.add_done_callback(partial(self._settled, header))
        else:
            pending = entry[0]
        if known and self.runner.down_since is not None:
            # The database is failing: answer from memory now rather than after the lookup
            # timeout; the lookup just started runs on and ends stale mode when it succeeds
            # (or drops the credential, if the database refuses it).
            stale = self.authenticator.stale(header)
            if stale is not None:
                self._serve_stale("down")
                return stale
        try:
            # shield: one waiter giving up (its client went away) must not cancel the others'.
            return await asyncio.shield(pending)
        except UpstreamError as exc:
            stale = self.authenticator.stale(header) if known else None
            if stale is None:
                raise
            self._serve_stale(type(exc).__name__)
            return stale

    async def _lookup(self, header: str, started: float) -> Tenant:
        try:
            tenant = await self.runner.run(self.authenticator.lookup, header)
        except Unauthenticated:
            self._answered(started)
            self.metrics.auth_lookups.labels("refused").inc()
            raise
        except UpstreamError as exc:
            result = "timeout" if isinstance(exc, LookupTimeout) else "busy" if isinstance(exc, LookupBusy) else "error"
            self.metrics.auth_lookups.labels(result).inc()
            if not isinstance(exc, LookupBusy):
                self.runner.mark(False, started)
            raise
        self._answered(started)
        self.metrics.auth_lookups.labels("ok").inc()
        return tenant

    def _serve_stale(self, reason: str) -> None:
        self.metrics.auth_stale_answers.inc()
        self._stale_answers += 1
        if not self.serving_stale:
            self.serving_stale = True
            self.metrics.auth_stale_serving.set(1)
            log.warning("serving stale credentials: the credential store cannot be reached",
                        extra={"reason": reason})

    def _answered(self, started: float) -> None:
        self.runner.mark(True, started)
        if self.serving_stale:
            self.serving_stale = False
            self.metrics.auth_stale_serving.set(0)
            log.warning("credential store answers again: stale credentials no longer served",
                        extra={"stale_answers": self._stale_answers})
            self._stale_answers = 0

    def _settled(self, header: str, future: asyncio.Future[Tenant]) -> None:
        entry = self._pending.get(header)
        if entry is not None and entry[0] is future:
            del self._pending[header]
        if not future.cancelled():
            future.exception()  # retrieved, even if every waiter has gone

    async def admit(self, header: str | None, client: str | None = None) -> Tenant:
        try:
            tenant = await self.authenticate(header, client)
        except Unauthenticated:
            self.metrics.auth_failures.inc()
            raise
        self.throttle(tenant)
        return tenant

    def throttle(self, tenant: Tenant) -> None:
        """The per-caller rate limit (a binding, or a dashboard session's user and instance)."""
        try:
            self.limiter.take(tenant.binding_id)
        except TooManyRequests:
            self.metrics.rate_limited.labels(tenant.scope.value).inc()
            raise
