"""Our parts as operators run them: ``python -m tenant_metrics broker|gateway|sd ...`` subprocesses."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tenant_metrics.world.ports import free_port
from tenant_metrics.world.processes import Child, spawn_ready

# The source tree (an editable install's root), so children import the same code as we do.
ROOT = Path(__file__).resolve().parents[2]


def part_env(settings: Mapping[str, str]) -> dict[str, str]:
    """A child's whole environment: only ``settings`` and what Python needs, never our own."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        **settings,
    }


def start_part(part: str, args: Sequence[str], workdir: Path, settings: Mapping[str, str], *,
               port: int | None = None, ready_path: str = "/healthz", ready: Callable[[], object] | None = None,
               timeout: float = 60.0) -> Child:
    """``tenant-metrics <part> <args>`` listening on ``PORT`` (free unless given), logging to
    ``workdir/<part>.log``, running in ``workdir``; returned once it is ready."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    return spawn_ready(part, [sys.executable, "-m", "tenant_metrics", part, *args], workdir / f"{part}.log",
                       url=url, ready_path=ready_path, ready=ready, timeout=timeout,
                       env=part_env({"PORT": str(port), **settings}), cwd=workdir)


def start_gateway(prometheus_urls: Sequence[str], database_url: str, workdir: Path, *, workers: int = 2,
                  extra_env: Mapping[str, str] | None = None, port: int | None = None,
                  timeout: float = 30.0) -> Child:
    """The gateway on gunicorn (``tenant-metrics gateway``) in front of ``prometheus_urls``."""
    (workdir / "prom-multiproc").mkdir(parents=True, exist_ok=True)
    settings = {
        "PROMETHEUS_URLS": ",".join(prometheus_urls),
        "DATABASE_URL": database_url,
        "GATEWAY_BIND_HOST": "127.0.0.1",
        "GATEWAY_WORKERS": str(workers),
        "GATEWAY_HEALTH_CHECK_SECONDS": "0.5",
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prom-multiproc"),
        "LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    return start_part("gateway", ["--workers", str(workers)], workdir, settings, port=port, timeout=timeout)


def start_broker(database_url: str, workdir: Path, username: str, password: str, *, workers: int = 1,
                 gateway_url: str = "https://metrics.example.org", extra_env: Mapping[str, str] | None = None,
                 port: int | None = None, timeout: float = 30.0) -> Child:
    """The broker on gunicorn (``tenant-metrics broker``) with OSB basic auth ``username``/``password``."""
    settings = {
        "DATABASE_URL": database_url,
        "BROKER_USERNAME": username,
        "BROKER_PASSWORD": password,
        "GATEWAY_PUBLIC_URL": gateway_url,
        "LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    return start_part("broker", ["--workers", str(workers)], workdir, settings, port=port, timeout=timeout)
