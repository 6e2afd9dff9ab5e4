"""manifest.yml parses, and every command it names exists in this project."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import yaml

from tenant_metrics.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _apps() -> list[dict[str, object]]:
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
    apps = manifest["applications"]
    assert isinstance(apps, list) and apps
    return apps


def test_manifest_declares_broker_gateway_and_sd_with_health_checks() -> None:
    apps = {a["name"]: a for a in _apps()}
    assert set(apps) == {"tenant-metrics-broker", "tenant-metrics-gateway", "tenant-metrics-sd"}
    for app in apps.values():
        assert app["health-check-type"] == "http"
        assert app["health-check-http-endpoint"] == "/healthz"
        assert app["buildpacks"] == ["python_buildpack"]
        assert app["services"], "each app needs the database binding"
        assert int(app["instances"]) >= 2


def test_every_command_in_the_manifest_exists() -> None:
    parser = build_parser()
    for app in _apps():
        for step in str(app["command"]).split("&&"):
            words = shlex.split(step)
            if words[0] == "exec":
                words = words[1:]
            if words[:3] == ["python", "-m", "tenant_metrics"]:
                parser.parse_args(words[3:])  # SystemExit on an unknown subcommand
            elif words[0] == "gunicorn":
                conf = words[words.index("--config") + 1]
                importlib.import_module(conf.removeprefix("python:"))
                target = words[-1]
                module, _, call = target.partition(":")
                factory = getattr(importlib.import_module(module), re.sub(r"\(.*\)$", "", call))
                assert callable(factory)
            else:
                raise AssertionError(f"unexpected command {words[0]!r} in manifest")


def test_buildpack_files_present() -> None:
    assert (ROOT / "requirements.txt").is_file()
    assert re.fullmatch(r"python-3\.\d+\.x", (ROOT / "runtime.txt").read_text().strip())


def test_sd_app_runs_sd_and_keeps_secrets_out_of_git() -> None:
    sd = {a["name"]: a for a in _apps()}["tenant-metrics-sd"]
    steps = [shlex.split(step) for step in str(sd["command"]).split("&&")]
    assert steps[0] == ["python", "-m", "tenant_metrics", "db", "upgrade"]
    assert steps[-1] == ["exec", "python", "-m", "tenant_metrics", "sd", "run"]
    env = {str(k): str(v) for k, v in dict(sd.get("env") or {}).items()}  # type: ignore[call-overload]
    secrets = {"AIVEN_API_TOKEN", "CF_CLIENT_SECRET", "SD_HTTP_PASSWORD", "SD_HTTP_BEARER_TOKEN", "METRICS_PASSWORD"}
    assert not secrets & set(env), "secrets are set with cf set-env, never in manifest.yml"
    assert all(v.startswith("((") or k.endswith("_USERNAME") for k, v in env.items() if k.startswith(("AIVEN_", "CF_")))
