"""The README's demo command, run headless: ready, a tenant query works, every printed dashboard
URL signs the printed demo users in (or refuses them) as printed, SIGINT stops everything."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.gateway.sso_support import log_in_at_uaa

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        try:
            cwd = os.readlink(proc / "cwd")
        except OSError:
            cwd = ""
        # Every child the demo starts runs in its working directory (gunicorn workers included).
        if text in cmdline or cwd.startswith(text):
            found.append(f"{proc.name}: {cmdline}")
    return found


@dataclass(frozen=True)
class PrintedUser:
    name: str
    password: str
    opens: frozenset[str]  # tenant letters ("A", "B") whose dashboard the guide says this user opens
    role: str


def _printed_guide(out: str) -> tuple[dict[str, str], list[PrintedUser]]:
    """The dashboard URLs (by tenant letter) and the demo users' table, as the demo printed them."""
    dashboards = dict(re.findall(r"^  tenant ([AB]) dashboard +(http\S+)$", out, re.M))
    table = re.search(r"^  user +password +opens +.*\n((?:  \S.*\n)+)", out, re.M)
    assert table is not None, out
    users = []
    for row in table.group(1).splitlines():
        name, password, opens, role = row.split(maxsplit=3)
        users.append(PrintedUser(name, password, frozenset() if opens == "none" else frozenset(opens.split("+")),
                                 role))
    return dashboards, users


def _sign_in(gateway: str, dashboard: str, user: PrintedUser) -> tuple[requests.Session, requests.Response]:
    """A browser opening the dashboard URL and signing in at the fake login server; returns the
    browser and the gateway's answer to the callback."""
    browser = requests.Session()
    start = browser.get(dashboard, allow_redirects=False, timeout=10)
    assert start.status_code == 303, start.text
    authorize = start.headers["Location"]
    assert "/oauth/authorize?" in authorize and "code_challenge_method=S256" in authorize, authorize
    callback = log_in_at_uaa(browser, authorize, user.name, user.password)
    assert callback.startswith(gateway + "/ui/sso/callback?"), callback
    return browser, browser.get(callback, allow_redirects=False, timeout=10)


def _check_printed_sso(gateway: str, out: str, sees: dict[str, set[str]]) -> None:
    """Every printed user on every printed dashboard: admitted exactly where the table says, then
    the session shows that user and the API (cookie only) answers with that tenant's services."""
    dashboards, users = _printed_guide(out)
    assert set(dashboards) == set(sees), out
    assert {letter for u in users for letter in u.opens} == set(sees), out
    no_role = [u for u in users if u.role.startswith("no role")]
    assert len(no_role) == 1 and not no_role[0].opens, out
    for user in users:
        for letter, url in dashboards.items():
            browser, resp = _sign_in(gateway, url, user)
            if letter not in user.opens:
                assert resp.status_code == 403, (user, letter, resp.status_code, resp.text[:300])
                assert browser.get(gateway + "/ui/session", timeout=10).status_code == 401
                continue
            assert (resp.status_code, resp.headers.get("Location")) == (303, "/ui/"), (user, letter, resp.text[:300])
            page = browser.get(gateway + "/ui/", timeout=10)
            assert page.status_code == 200 and "Authorization" not in page.request.headers
            session = browser.get(gateway + "/ui/session", timeout=10)
            assert session.status_code == 200, session.text
            assert session.json()["sso"]["user"] == user.name
            assert url.endswith("/ui/instances/" + session.json()["sso"]["instance"])
            query = browser.get(gateway + "/api/v1/query", params={"query": "up"}, timeout=10)
            assert query.status_code == 200, query.text
            assert {r["metric"]["cf_service_instance_name"] for r in query.json()["data"]["result"]} == sees[letter]


@contextmanager
def _running_demo(tmp_path: Path, *options: str) -> Iterator[tuple[dict[str, Any], Path]]:
    """``tenant-metrics demo`` until ready; yields its ready-file JSON and its output file. After
    a passing body: SIGINT stops it cleanly and leaves no process behind."""
    workdir = tmp_path / "demo-data"
    ready = tmp_path / "ready.json"
    output = tmp_path / "demo.out"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PORT")}
    with output.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "tenant_metrics", "demo", "--dir", str(workdir),
                                 "--ready-file", str(ready), *options], cwd=tmp_path, env=env, stdout=sink,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while not ready.exists():
            assert proc.poll() is None, output.read_text()
            assert time.monotonic() < deadline, "demo not ready after 180 s"
            time.sleep(0.5)
        running = _processes_mentioning(str(workdir))
        assert len(running) >= 6, running  # sd, prometheus, broker + workers, gateway + workers
        yield json.loads(ready.read_text()), output
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    out = output.read_text()
    assert proc.returncode == 0, out[-2000:]
    assert "stopped" in out
    time.sleep(0.5)
    assert _processes_mentioning(str(workdir)) == []


def _instances_seen(gateway: str, cred: dict[str, str]) -> set[str]:
    resp = requests.get(gateway + "/api/v1/query", params={"query": "up"},
                        auth=(cred["username"], cred["password"]), timeout=10)
    assert resp.status_code == 200, resp.text
    return {r["metric"]["cf_service_instance_name"] for r in resp.json()["data"]["result"]}


def test_demo_runs_serves_tenants_signs_printed_users_in_and_stops_cleanly_on_sigint(
        tmp_path: Path, prometheus_binary: str) -> None:
    with _running_demo(tmp_path) as (info, output):
        gateway = info["gateway"]
        a, b = info["credentials"]["tenant-a"], info["credentials"]["tenant-b"]
        seen = {"A": _instances_seen(gateway, a), "B": _instances_seen(gateway, b)}
        assert seen == {"A": {"orders-search"}, "B": {"logs"}}
        wrong = requests.get(gateway + "/api/v1/query", params={"query": "up"},
                             auth=(a["username"], b["password"]), timeout=10)
        assert wrong.status_code == 401
        printed = output.read_text()
        assert info["sso"] is True
        assert info["dashboards"] == {f"tenant-{k.lower()}": v for k, v in _printed_guide(printed)[0].items()}
        _check_printed_sso(gateway, printed, seen)


def test_demo_without_sso_keeps_service_keys_and_the_tenant_page(tmp_path: Path, prometheus_binary: str) -> None:
    with _running_demo(tmp_path, "--no-sso") as (info, output):
        gateway = info["gateway"]
        assert info["sso"] is False
        assert info["dashboards"] == {"tenant-a": gateway + "/ui/", "tenant-b": gateway + "/ui/"}
        assert "single sign-on is off" in output.read_text()
        assert _instances_seen(gateway, info["credentials"]["tenant-a"]) == {"orders-search"}
        dashboard = requests.get(gateway + "/ui/instances/9a000000-0000-4000-8000-00000000000a",
                                 allow_redirects=False, timeout=10)
        assert dashboard.status_code == 404
