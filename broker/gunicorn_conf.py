"""gunicorn settings for the broker: ``gunicorn --config python:broker.gunicorn_conf "broker.app:create_app()"``.

Binds 0.0.0.0:$PORT (Cloud Foundry's health check connects to the container IP; locally,
``tenant-metrics broker`` binds 127.0.0.1 instead). Logs are JSON lines on stdout; the
access log is our app's own (it knows the OSB endpoint and never logs headers).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from tenant_metrics.core.jsonlog import gunicorn_logconfig

# Several workers: metric values go to files in a shared directory that /metrics merges.
# It must be set before prometheus_client is imported anywhere (it picks its value class
# at import), which is why this happens at the top of the config module.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="tenant-metrics-broker-metrics-")

bind = os.environ.get("GUNICORN_BIND") or f"0.0.0.0:{os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "sync"
# Cloud Controller gives up on a broker after 60 s. A worker waits for the database at most
# BROKER_REQUEST_TIMEOUT (4.5 s, at most 30 s: broker/store.py), then answers 503, so this
# is only for a worker truly stuck elsewhere; it must stay above that deadline.
timeout = 60
graceful_timeout = 20
keepalive = 5
accesslog = None
errorlog = "-"
capture_output = False
# gunicorn >= 24 opens a runtime control socket at one fixed path per user; several masters
# on one machine (tests, benchmarks, other parts) would fight over it, and we never use it.
control_socket_disable = True
# Never DEBUG for openbrokerapi: its request printer logs the Authorization header.
logconfig_dict = gunicorn_logconfig(os.environ.get("LOG_LEVEL", "INFO"), quiet=("openbrokerapi",))


def on_starting(server: Any) -> None:
    """Start each run with no stale per-worker metric files from a previous master."""
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        target = os.path.join(path, name)
        if os.path.isfile(target):
            os.unlink(target)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if path.startswith(os.path.join(tempfile.gettempdir(), "tenant-metrics-broker-metrics-")):
        shutil.rmtree(path, ignore_errors=True)
