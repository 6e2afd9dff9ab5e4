"""Serve a WSGI or aiohttp app on loopback in a thread of this process (real HTTP, no subprocess)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web
from werkzeug.serving import BaseWSGIServer, make_server

from tenant_metrics.world.errors import NotReady


@contextmanager
def serve_wsgi(app: Callable[..., Any], threaded: bool = True) -> Iterator[str]:
    """Serve a WSGI app on loopback with werkzeug's real HTTP server; yields its base URL."""
    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=threaded)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def serve_app(app: web.Application, port: int = 0) -> Iterator[str]:
    """Serve an aiohttp app on loopback (on ``port``, or a free one), on its own event loop in
    a thread; yields its base URL.

    On exit the app is cleaned up as gunicorn's worker would (on_cleanup runs)."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    started = threading.Event()
    bound: list[int] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", port)
        loop.run_until_complete(site.start())
        bound.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not started.wait(30):
        raise NotReady("the aiohttp app did not start within 30s")
    try:
        yield f"http://127.0.0.1:{bound[0]}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
