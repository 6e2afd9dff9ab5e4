"""Credential lookups off the event loop, each bounded in time, none able to starve recovery.

A lookup is a blocking database call. Against a hung database (a partition, a blackholed
connection) it may block far longer than anyone should wait, and the driver's own
timeouts may never fire (a peer that accepts bytes and never answers). So every lookup
runs in a thread of its own and is waited for at most ``timeout`` seconds; one that runs
longer is *abandoned*: its caller gets ``LookupTimeout`` and its slot goes to the next
lookup, while the thread stays stuck until the driver gives up. Abandoned threads are
counted; once ``max_abandoned`` are stuck, or while the database is known to be down and
every slot is busy, a lookup fails at once with ``LookupBusy`` instead of queueing. So
when the database answers again, fresh threads and connections are there for it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from tenant_metrics.core.errors import UpstreamError, UpstreamTimeout

T = TypeVar("T")


class LookupTimeout(UpstreamTimeout):
    """The credential store did not answer within the lookup timeout."""


class LookupBusy(UpstreamError):
    """Every lookup slot is taken while the credential store is not answering."""


class _Slot(Generic[T]):
    __slots__ = ("abandoned", "future")

    def __init__(self, future: asyncio.Future[T]) -> None:
        self.future = future
        self.abandoned = False


class LookupRunner:
    """Runs blocking lookups in threads: at most ``max_running`` at once, each for at most ``timeout``."""

    def __init__(self, max_running: int = 4, timeout: float = 3.0, max_abandoned: int = 8) -> None:
        if max_running < 1 or timeout <= 0 or max_abandoned < 0:
            raise ValueError("max_running >= 1, timeout > 0 and max_abandoned >= 0 are required")
        self.max_running = max_running
        self.timeout = timeout
        self.max_abandoned = max_abandoned
        self.running = 0
        self.abandoned = 0
        self.down_since: float | None = None  # set by the last failure, cleared by a success
        self.answered_at = 0.0  # when the last lookup that got an answer started
        self._waiters: deque[asyncio.Future[None]] = deque()

    def mark(self, answered: bool, started: float) -> None:
        """Record whether the store answered (a refusal is an answer) or failed, for a lookup
        that started at ``started`` (monotonic). A failure of a lookup that started before the
        last answer says nothing new: the store answered since."""
        if answered:
            self.down_since = None
            self.answered_at = max(self.answered_at, started)
        elif self.down_since is None and started >= self.answered_at:
            self.down_since = time.monotonic()

    async def run(self, fn: Callable[[str], T], arg: str) -> T:
        deadline = time.monotonic() + self.timeout
        if self.abandoned >= self.max_abandoned:
            raise LookupBusy("credential store unavailable (lookups are stuck)")
        if self.running >= self.max_running:
            if self.down_since is not None:
                raise LookupBusy("credential store unavailable")
            await self._wait_for_slot(deadline)
        loop = asyncio.get_running_loop()
        slot: _Slot[T] = _Slot(loop.create_future())
        self.running += 1

        def settle(ok: bool, value: object) -> None:
            if slot.abandoned:
                self.abandoned -= 1
            else:
                self._release()
            if not slot.future.done():
                if ok:
                    slot.future.set_result(value)  # type: ignore[arg-type]
                else:
                    assert isinstance(value, BaseException)
                    slot.future.set_exception(value)

        def work() -> None:
            try:
                result: object = fn(arg)
                ok = True
            except BaseException as exc:  # handed to the event loop, raised there
                result, ok = exc, False
            try:
                loop.call_soon_threadsafe(settle, ok, result)
            except RuntimeError:  # the loop closed while this thread was stuck
                pass

        threading.Thread(target=work, name="auth-lookup", daemon=True).start()
        try:
            return await asyncio.wait_for(asyncio.shield(slot.future), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            if not slot.future.done() and not slot.abandoned:
                slot.abandoned = True
                self.abandoned += 1
                self._release()
            raise LookupTimeout(f"credential store did not answer within {self.timeout:g}s") from None

    def _release(self) -> None:
        self.running -= 1
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _wait_for_slot(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while self.running >= self.max_running:
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise LookupTimeout(f"credential store did not answer within {self.timeout:g}s") from None
