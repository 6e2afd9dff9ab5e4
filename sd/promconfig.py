"""Pure: the Prometheus scrape job that reads sd's targets (file_sd beside Prometheus, or
http_sd from sd's /targets), and the rule files, as YAML."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import yaml

from tenant_metrics.core.errors import ConfigError


def file_sd(targets_file: str, refresh_interval: str = "1m") -> dict[str, Any]:
    return {"file_sd_configs": [{"files": [targets_file], "refresh_interval": refresh_interval}]}


def http_sd(
    url: str,
    refresh_interval: str = "1m",
    *,
    username: str | None = None,
    password_file: str | None = None,
    token_file: str | None = None,
    ca_file: str | None = None,
) -> dict[str, Any]:
    """sd's /targets over HTTP(S); the secret by file (``password_file`` / ``credentials_file``),
    never inline, so the config can be shown and versioned. ``ca_file``: the CA that signed
    sd's certificate, for a route behind a private CA (a path on the Prometheus host)."""
    entry: dict[str, Any] = {"url": url, "refresh_interval": refresh_interval}
    if ca_file is not None:
        entry["tls_config"] = {"ca_file": ca_file}
    if password_file is not None:
        entry["basic_auth"] = {"username": username or "", "password_file": password_file}
    elif token_file is not None:
        entry["authorization"] = {"type": "Bearer", "credentials_file": token_file}
    return {"http_sd_configs": [entry]}


def targets_url(url: str | None) -> str:
    """``--sd-url``: an http(s) URL; a bare base URL gets ``/targets``."""
    if not url:
        raise ConfigError("--sd-url is required with --mode http_sd (sd's /targets URL)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--sd-url must be an http(s) URL with a host, got {url!r}")
    if parts.username or parts.password:
        raise ConfigError("--sd-url must not carry credentials (they go in SD_HTTP_* settings)")
    if parts.path in ("", "/"):
        url = url.rstrip("/") + "/targets"
    return url


def scrape_job(
    *,
    targets_file: str,
    username: str,
    password_file: str,
    ca_file: str,
    job_name: str = "aiven-tenant-services",
    scrape_interval: str = "60s",
    scrape_timeout: str = "30s",
    discovery: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Aiven nodes serve HTTPS with a certificate for the service hostname signed by the project
    CA; targets are node IPs, and Prometheus 2.42 has no per-target server name, so Aiven's own
    advice is the project CA plus insecure_skip_verify (docs/external-apis.md §3).
    honor_labels stays false: a cf_* label a service emits is renamed exported_cf_*, so a
    service cannot claim another tenant's labels. ``discovery`` is ``file_sd(...)`` (default,
    reading ``targets_file``) or ``http_sd(...)``."""
    return {
        "job_name": job_name,
        "scheme": "https",
        "metrics_path": "/metrics",
        "scrape_interval": scrape_interval,
        "scrape_timeout": scrape_timeout,
        "honor_labels": False,
        "basic_auth": {"username": username, "password_file": password_file},
        "tls_config": {"ca_file": ca_file, "insecure_skip_verify": True},
        **(discovery if discovery is not None else file_sd(targets_file)),
    }


def render(
    job: dict[str, Any], rule_files: Sequence[str] = (), alerting: dict[str, Any] | None = None
) -> str:
    """The config fragment; ``rule_files`` (paths or globs) become its ``rule_files:``,
    ``alerting`` (sd.alertmanager.alerting_section) its ``alerting:``."""
    config: dict[str, Any] = {}
    if alerting:
        config["alerting"] = alerting
    if rule_files:
        config["rule_files"] = list(rule_files)
    config["scrape_configs"] = [job]
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
