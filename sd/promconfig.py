"""Pure: the Prometheus scrape job that reads sd's targets (file_sd), and the rule files, as YAML."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml


def scrape_job(
    *,
    targets_file: str,
    username: str,
    password_file: str,
    ca_file: str,
    job_name: str = "aiven-tenant-services",
    scrape_interval: str = "60s",
    scrape_timeout: str = "30s",
) -> dict[str, Any]:
    """Aiven nodes serve HTTPS with a certificate for the service hostname signed by the project
    CA; targets are node IPs, and Prometheus 2.42 has no per-target server name, so Aiven's own
    advice is the project CA plus insecure_skip_verify (/work/shared/aiven-api.md §3).
    honor_labels stays false: a cf_* label a service emits is renamed exported_cf_*, so a
    service cannot claim another tenant's labels."""
    return {
        "job_name": job_name,
        "scheme": "https",
        "metrics_path": "/metrics",
        "scrape_interval": scrape_interval,
        "scrape_timeout": scrape_timeout,
        "honor_labels": False,
        "basic_auth": {"username": username, "password_file": password_file},
        "tls_config": {"ca_file": ca_file, "insecure_skip_verify": True},
        "file_sd_configs": [{"files": [targets_file], "refresh_interval": "1m"}],
    }


def render(job: dict[str, Any], rule_files: Sequence[str] = ()) -> str:
    """The config fragment; ``rule_files`` (paths or globs) become its ``rule_files:``."""
    config: dict[str, Any] = {}
    if rule_files:
        config["rule_files"] = list(rule_files)
    config["scrape_configs"] = [job]
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
