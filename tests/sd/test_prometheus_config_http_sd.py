"""``tenant-metrics sd prometheus-config --mode http_sd``: the job reads sd's /targets with
sd's credential from a 0600 file (never on stdout), and promtool accepts it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.sd.conftest import Harness
from tests.sd.test_cli import _cli

PASSWORD = "sd-http-secret-0123456789"
TOKEN = "sd-bearer-token-abcdefghij"
SD_URL = "https://tenant-metrics-sd.apps.example.org/targets"


def _promtool_ok(h: Harness, text: str) -> None:
    config = h.tmp_path / "prometheus.yml"
    config.write_text(text)
    check = subprocess.run(["promtool", "check", "config", "--syntax-only", str(config)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_http_sd_with_basic_auth_from_a_password_file(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    done = _cli(h, "sd", "prometheus-config", "--mode", "http_sd", "--sd-url", SD_URL, "--refresh-interval", "30s",
                SD_HTTP_USERNAME="prometheus", SD_HTTP_PASSWORD=PASSWORD)
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout and "scrape-secret-123" not in done.stdout
    config = yaml.safe_load(done.stdout)
    job = config["scrape_configs"][0]
    assert "file_sd_configs" not in job
    (sd,) = job["http_sd_configs"]
    assert sd["url"] == SD_URL and sd["refresh_interval"] == "30s"
    assert sd["basic_auth"]["username"] == "prometheus"
    secret_file = Path(sd["basic_auth"]["password_file"])
    assert secret_file.read_text() == PASSWORD
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    # The scrape of the Aiven nodes is the same as in file_sd mode.
    assert job["basic_auth"]["username"] == "prom-scraper" and job["tls_config"]["insecure_skip_verify"] is True
    assert config["rule_files"]  # the shipped rules, as in file_sd mode
    _promtool_ok(h, done.stdout)


def test_http_sd_with_a_bearer_token_file_and_a_base_url(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    token_file = h.tmp_path / "secrets" / "sd-token"
    token_file.parent.mkdir()
    done = _cli(h, "sd", "prometheus-config", "--mode", "http_sd", "--sd-url", "https://sd.example.org/",
                "--sd-credentials-file", str(token_file), SD_HTTP_BEARER_TOKEN=TOKEN)
    assert done.returncode == 0, done.stderr
    assert TOKEN not in done.stdout
    (sd,) = yaml.safe_load(done.stdout)["scrape_configs"][0]["http_sd_configs"]
    assert sd["url"] == "https://sd.example.org/targets"
    assert sd["authorization"] == {"type": "Bearer", "credentials_file": str(token_file)}
    assert "basic_auth" not in sd and token_file.read_text() == TOKEN
    _promtool_ok(h, done.stdout)


def test_http_sd_needs_a_good_url_and_writes_nothing_without_one(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    for args, problem in (((), "--sd-url is required with --mode http_sd"),
                          (("--sd-url", "ftp://sd.example.org"), "--sd-url must be an http(s) URL"),
                          (("--sd-url", "https://u:p@sd.example.org"), "--sd-url must not carry credentials")):
        done = _cli(h, "sd", "prometheus-config", "--mode", "http_sd", *args,
                    SD_HTTP_USERNAME="prometheus", SD_HTTP_PASSWORD=PASSWORD)
        assert done.returncode == 2 and problem in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and done.stdout == ""
    assert not list(h.tmp_path.rglob("sd-http-credentials"))
    assert not list(h.tmp_path.rglob("aiven-prometheus-password"))


def test_file_sd_stays_the_default(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    done = _cli(h, "sd", "prometheus-config", SD_HTTP_USERNAME="prometheus", SD_HTTP_PASSWORD=PASSWORD)
    assert done.returncode == 0, done.stderr
    job = yaml.safe_load(done.stdout)["scrape_configs"][0]
    assert "http_sd_configs" not in job
    assert job["file_sd_configs"] == [{"files": [str(h.targets_file.resolve())], "refresh_interval": "1m"}]
    assert not list(h.tmp_path.rglob("sd-http-credentials"))


def test_http_sd_trusts_a_given_ca_for_sds_route(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    done = _cli(h, "sd", "prometheus-config", "--mode", "http_sd", "--sd-url", SD_URL,
                "--sd-ca-file", "/etc/prometheus/platform-ca.pem",
                SD_HTTP_USERNAME="prometheus", SD_HTTP_PASSWORD=PASSWORD)
    assert done.returncode == 0, done.stderr
    job = yaml.safe_load(done.stdout)["scrape_configs"][0]
    (sd,) = job["http_sd_configs"]
    assert sd["tls_config"] == {"ca_file": "/etc/prometheus/platform-ca.pem"}
    assert job["tls_config"]["insecure_skip_verify"] is True  # the Aiven scrape keeps its own
    _promtool_ok(h, done.stdout)
    # Without a CA, no tls_config: the system's trust store is used.
    plain = _cli(h, "sd", "prometheus-config", "--mode", "http_sd", "--sd-url", SD_URL,
                 SD_HTTP_USERNAME="prometheus", SD_HTTP_PASSWORD=PASSWORD)
    assert "tls_config" not in yaml.safe_load(plain.stdout)["scrape_configs"][0]["http_sd_configs"][0]
    wrong = _cli(h, "sd", "prometheus-config", "--sd-ca-file", "/etc/ca.pem",
                 SD_HTTP_USERNAME="prometheus", SD_HTTP_PASSWORD=PASSWORD)
    assert wrong.returncode == 2 and "--sd-ca-file applies to --mode http_sd only" in wrong.stderr
