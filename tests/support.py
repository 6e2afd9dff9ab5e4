"""Helpers the tests share: free ports, a real WSGI server in a thread, waiting for HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests
from werkzeug.serving import BaseWSGIServer, make_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def wait_http(url: str, timeout: float = 30.0, ok: Callable[[requests.Response], bool] | None = None) -> None:
    """Poll ``url`` until it answers (2xx, or ``ok``), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            resp = requests.get(url, timeout=2)
            if (ok or (lambda r: r.ok))(resp):
                return
            last = resp.status_code
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s: {last}")
