"""Run until interrupted: the demo serves until Ctrl-C (SIGINT) or SIGTERM, or until ``stop`` is set."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable


def serve_until_interrupted(check: Callable[[], None], stop: threading.Event | None = None,
                            poll: float = 0.5) -> None:
    """Call ``check`` every ``poll`` seconds (it raises when something died) until ``stop`` is
    set or, when called on the main thread, SIGINT/SIGTERM arrives; handlers are restored after."""
    stop = stop or threading.Event()
    previous: dict[signal.Signals, object] = {}
    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGINT, signal.SIGTERM):
            previous[number] = signal.signal(number, lambda *_: stop.set())
    try:
        while not stop.wait(poll):
            check()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)  # type: ignore[arg-type]
