"""gunicorn settings for the gateway: ``gunicorn -c gateway/gunicorn_conf.py "gateway.app:create_app()"``.

Environment: PORT (default 8090), GATEWAY_BIND_HOST (default 0.0.0.0, as Cloud Foundry
needs), GATEWAY_WORKERS (else WEB_CONCURRENCY, else one per CPU, at most 4). Each worker is one
process running one uvloop event loop (aiohttp's gunicorn worker): requests wait on
Prometheus without holding a thread. Metrics from all workers are merged through
prometheus_client's multiprocess mode.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from gateway.config import DEFAULT_PORT
from tenant_metrics.core.jsonlog import gunicorn_logconfig

bind = f"{os.environ.get('GATEWAY_BIND_HOST', '0.0.0.0')}:{os.environ.get('PORT') or DEFAULT_PORT}"
# Containers often see the host's CPUs (Cloud Foundry shares them by weight): the default is
# capped so a large host does not start dozens of ~70 MB workers in a 512 MB container.
workers = int(os.environ.get("GATEWAY_WORKERS") or os.environ.get("WEB_CONCURRENCY") or min(os.cpu_count() or 1, 4))
worker_class = "aiohttp.GunicornUVLoopWebWorker"
keepalive = 75  # longer than Grafana's and the CF router's idle timeouts
timeout = 120
graceful_timeout = 30
accesslog = None  # the app writes one JSON line per request, without secrets
errorlog = "-"
# gunicorn's own lines (and aiohttp's, which go through gunicorn's error log) as scrubbed JSON.
logconfig_dict = gunicorn_logconfig(os.environ.get("LOG_LEVEL", "INFO"))
# Workers are recycled now and then: a leak (or a parser bug) cannot grow forever.
max_requests = 20000
max_requests_jitter = 2000
# Every gunicorn master on a machine would otherwise fight over ~/.gunicorn/gunicorn.ctl.
control_socket_disable = True

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _dir = tempfile.mkdtemp(prefix="tenant-metrics-gateway-prom-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _dir
    _owned_dir: str | None = _dir
else:
    _owned_dir = None


def on_starting(server: Any) -> None:
    from tenant_metrics.core import jsonlog

    jsonlog.configure(os.environ.get("LOG_LEVEL", "INFO"))


def post_fork(server: Any, worker: Any) -> None:
    from tenant_metrics.core import jsonlog

    jsonlog.configure(os.environ.get("LOG_LEVEL", "INFO"))


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    if _owned_dir:
        shutil.rmtree(_owned_dir, ignore_errors=True)
