"""Real processes for the gateway's end-to-end test and benchmark: Prometheus, the gateway.

Everything listens on 127.0.0.1 and is started with a config written to a temporary
directory; ``stop`` terminates (then kills) each process it started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Target:
    """One scrape target (host:port) and the tenant labels sd would give it."""

    address: str
    labels: Mapping[str, str]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0, auth: tuple[str, str] | None = None,
              request_timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            resp = requests.get(url, timeout=request_timeout, auth=auth)
            if resp.ok:
                return
            last = resp.status_code
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s: {last}")


def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def spawn_ready(argv: Sequence[str], log_path: Path, ready_url: str, timeout: float = 60.0,
                env: Mapping[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a server process logging to ``log_path``; return once ``ready_url`` answers 2xx.

    If it never does, the process is stopped before the TimeoutError propagates."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT,
                                env=dict(env) if env is not None else None, cwd=str(cwd) if cwd else None)
    try:
        wait_http(ready_url, timeout=timeout)
    except TimeoutError:
        stop(proc)
        raise
    return proc


def start_prometheus(
    binary: str, workdir: Path, targets: Sequence[Target], scrape_interval: str = "1s"
) -> tuple[subprocess.Popen[bytes], str]:
    """A real Prometheus scraping ``targets`` (static_configs carrying the tenant labels)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [
            {
                "job_name": "aiven",
                "honor_labels": False,
                "static_configs": [{"targets": [t.address], "labels": dict(t.labels)} for t in targets],
            }
        ],
    }
    (workdir / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
    return spawn_ready(argv, workdir / "prometheus.log", url + "/-/ready", timeout=60), url


def wait_for_series(url: str, query: str, expected: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    count = -1
    while time.monotonic() < deadline:
        try:
            result = requests.get(url + "/api/v1/query", params={"query": query}, timeout=5).json()["data"]["result"]
            count = len(result)
            if count >= expected:
                return
        except (requests.RequestException, KeyError, ValueError):
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{query!r} on {url}: {count} series, wanted {expected}")


def start_gateway(
    prometheus_urls: Sequence[str],
    database_url: str,
    workdir: Path,
    workers: int = 2,
    extra_env: Mapping[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """The gateway as production runs it: `tenant-metrics gateway` (gunicorn), in a subprocess."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONPATH": str(REPO),
        "PROMETHEUS_URLS": ",".join(prometheus_urls),
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "GATEWAY_BIND_HOST": "127.0.0.1",
        "GATEWAY_WORKERS": str(workers),
        "GATEWAY_HEALTH_CHECK_SECONDS": "0.5",
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prom-multiproc"),
        "LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    (workdir / "prom-multiproc").mkdir(exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    proc = spawn_ready([sys.executable, "-m", "tenant_metrics", "gateway"], workdir / "gateway.log",
                       url + "/healthz", timeout=30, env=env, cwd=REPO)
    return proc, url
