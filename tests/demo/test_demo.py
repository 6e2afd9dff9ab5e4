"""The README's demo command, run headless: ready, a tenant query works, SIGINT stops everything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

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


def test_demo_runs_serves_a_tenant_and_stops_cleanly_on_sigint(tmp_path: Path, prometheus_binary: str) -> None:
    workdir = tmp_path / "demo-data"
    ready = tmp_path / "ready.json"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PORT")}
    proc = subprocess.Popen([sys.executable, "-m", "tenant_metrics", "demo", "--dir", str(workdir), "--ready-file", str(ready)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while not ready.exists():
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "demo not ready after 180 s"
            time.sleep(0.5)
        info = json.loads(ready.read_text())
        a, b = info["credentials"]["tenant-a"], info["credentials"]["tenant-b"]
        seen = {}
        for name, cred in (("a", a), ("b", b)):
            resp = requests.get(info["gateway"] + "/api/v1/query", params={"query": "up"},
                                auth=(cred["username"], cred["password"]), timeout=10)
            assert resp.status_code == 200, resp.text
            seen[name] = {r["metric"]["cf_service_instance_name"] for r in resp.json()["data"]["result"]}
        assert seen == {"a": {"orders-search"}, "b": {"logs"}}
        wrong = requests.get(info["gateway"] + "/api/v1/query", params={"query": "up"},
                             auth=(a["username"], b["password"]), timeout=10)
        assert wrong.status_code == 401
        running = _processes_mentioning(str(workdir))
        assert len(running) >= 6, running  # sd, prometheus, broker + workers, gateway + workers
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out.decode()[-2000:]
    assert b"stopped" in out
    time.sleep(0.5)
    assert _processes_mentioning(str(workdir)) == []
