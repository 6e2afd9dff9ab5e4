"""A real Prometheus (Debian's binary) with a config we give it, and the configs we give it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tenant_metrics.world.errors import WorldError
from tenant_metrics.world.ports import free_port
from tenant_metrics.world.processes import Child, spawn_ready


@dataclass(frozen=True, slots=True)
class Target:
    """One scrape target (host:port) and the tenant labels sd would give it."""

    address: str
    labels: Mapping[str, str]


def prometheus_binary() -> str:
    path = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(path).exists():
        raise WorldError("prometheus binary not found: install Debian's 'prometheus' package (make deps)")
    return path


def static_config(targets: Sequence[Target], scrape_interval: str = "1s") -> dict[str, Any]:
    """One job scraping ``targets`` over plain HTTP, their labels as static_configs labels."""
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [
            {
                "job_name": "aiven",
                "honor_labels": False,
                "static_configs": [{"targets": [t.address], "labels": dict(t.labels)} for t in targets],
            }
        ],
    }


def sd_config(env: Mapping[str, str], cwd: Path, interval: str = "1s", timeout: str | None = None) -> dict[str, Any]:
    """The scrape job ``tenant-metrics sd prometheus-config`` prints for ``env``, with a short
    ``interval`` (scrapes and file_sd refresh) so that a test or the demo sees data soon."""
    printed = subprocess.run([sys.executable, "-m", "tenant_metrics", "sd", "prometheus-config"], check=False,
                             env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=60)
    if printed.returncode != 0:
        raise WorldError(f"sd prometheus-config failed: {printed.stderr.strip()[-500:]}")
    job = yaml.safe_load(printed.stdout)["scrape_configs"][0]
    job.update(scrape_interval=interval, scrape_timeout=timeout or interval)
    job["file_sd_configs"][0]["refresh_interval"] = interval
    return {"global": {"scrape_interval": interval}, "scrape_configs": [job]}


def start_prometheus(workdir: Path, config: Mapping[str, Any] | str, *, binary: str | None = None,
                     extra_flags: Sequence[str] = (), timeout: float = 60.0) -> Child:
    """Prometheus on a free loopback port with ``config`` (a mapping, or YAML text), its data,
    config and log in ``workdir``; returned once /-/ready answers. ``child.url`` is its base URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "prometheus.yml"
    config_file.write_text(config if isinstance(config, str) else yaml.safe_dump(dict(config)))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [binary or prometheus_binary(), f"--config.file={config_file}", f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn", *extra_flags]
    return spawn_ready("prometheus", argv, workdir / "prometheus.log", url=url, ready_path="/-/ready",
                       timeout=timeout, cwd=workdir)
