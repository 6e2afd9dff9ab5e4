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


def test_manifest_declares_broker_and_gateway_with_health_checks() -> None:
    apps = {a["name"]: a for a in _apps()}
    assert set(apps) == {"tenant-metrics-broker", "tenant-metrics-gateway"}
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
