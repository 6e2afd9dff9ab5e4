"""What `cf push` uploads and installs: exact pins that agree with pyproject, and a .cfignore
that leaves every local file behind but keeps everything the apps run."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)")


def pins(text: str) -> dict[str, Version]:
    """name -> version for every requirement line; refuses anything but an exact, hashed pin."""
    found: dict[str, Version] = {}
    for entry in re.sub(r"\\\n\s*", " ", text).splitlines():
        entry = entry.split("#", 1)[0].strip()
        if not entry:
            continue
        match = PIN.match(entry)
        assert match, f"not an exact pin: {entry!r}"
        assert "--hash=sha256:" in entry, f"no hash: {entry!r}"
        found[canonicalize_name(match["name"])] = Version(match["version"])
    return found


def runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"]]


def test_every_runtime_dependency_is_pinned_inside_its_range() -> None:
    pinned = pins((ROOT / "requirements.txt").read_text())
    env = default_environment()
    wanted = [r for r in runtime_requirements() if r.marker is None or r.marker.evaluate(env)]
    assert wanted
    for req in wanted:
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} is in pyproject.toml but not pinned: run 'make requirements'"
        assert req.specifier.contains(pinned[name], prereleases=True), (
            f"{req.name}=={pinned[name]} is outside pyproject's {req.specifier}: run 'make requirements'")
        for extra in req.extras:  # psycopg[binary] -> psycopg-binary
            assert canonicalize_name(f"{req.name}-{extra}") in pinned, f"{req.name}[{extra}] not pinned"


def test_the_pin_checker_refuses_ranges_and_unhashed_lines() -> None:
    for bad in ("flask>=3\n", "flask==3.1.3\n", ".\n", "-e .\n"):
        try:
            pins(bad)
        except AssertionError:
            continue
        raise AssertionError(f"accepted {bad!r}")
    assert pins("flask==3.1.3 \\\n    --hash=sha256:ab\n") == {"flask": Version("3.1.3")}


def test_requirements_name_no_local_index_or_project_install() -> None:
    text = (ROOT / "requirements.txt").read_text()
    for forbidden in ("--find-links", "--index-url", "--extra-index-url", "file://", "-e "):
        assert forbidden not in text


def _ignored(paths: list[str], tmp_path: Path) -> set[str]:
    """Which paths .cfignore leaves out, with git's own matcher (cf follows .gitignore rules)."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text((ROOT / ".cfignore").read_text())
    result = subprocess.run(["git", "-C", str(tmp_path), "check-ignore", "--no-index", "--stdin"],
                            input="\n".join(paths), capture_output=True, text=True, timeout=30)
    assert result.returncode in (0, 1), result.stderr
    return set(result.stdout.split())


def test_cfignore_leaves_local_files_behind(tmp_path: Path) -> None:
    local = [".venv/bin/python", ".git/config", "demo-data/tm.sqlite3", "tenant-metrics.sqlite3",
             "tenant-metrics.sqlite3-wal", "broker/__pycache__/app.cpython-311.pyc",
             "tenant_metrics.egg-info/PKG-INFO", "tests/conftest.py", "bench/run_all.py",
             ".pytest_cache/v/x", "build/lib/x.py", "vars.yml", "var/prometheus/wal"]
    assert _ignored(local, tmp_path) == set(local)


def test_cfignore_keeps_what_the_apps_run(tmp_path: Path) -> None:
    needed = ["requirements.txt", "runtime.txt", "manifest.yml", "tenant_metrics/cli.py",
              "tenant_metrics/__main__.py", "broker/app.py", "broker/gunicorn_conf.py", "sd/app.py",
              "gateway/app.py", "gateway/ui/static/index.html", "migrations/env.py",
              "migrations/versions/0001_initial_schema.py", "tenant_metrics/dashboards/aiven-opensearch.json",
              "docs/tenant-guide.md", "LICENSE"]
    for path in needed:
        assert (ROOT / path).exists(), path
    assert _ignored(needed, tmp_path) == set()
