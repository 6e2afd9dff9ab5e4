"""tenant_metrics.world: children that die or never answer fail fast and are stopped, by PID only."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

from tenant_metrics.world import (
    NotReady,
    WorldError,
    free_port,
    serve_until_interrupted,
    spawn,
    spawn_ready,
)


def test_a_child_that_exits_fails_at_once_naming_its_log(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(WorldError, match="exited with status 3") as caught:
        spawn_ready("dies", [sys.executable, "-c", "print('bad config'); raise SystemExit(3)"], tmp_path / "dies.log",
                    url=f"http://127.0.0.1:{free_port()}", timeout=30)
    assert time.monotonic() - started < 10  # not the whole timeout
    assert str(tmp_path / "dies.log") in str(caught.value)
    assert "bad config" in (tmp_path / "dies.log").read_text()


def test_a_child_never_ready_is_stopped_after_the_timeout(tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    argv = [sys.executable, "-c", f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(600)"]
    with pytest.raises(NotReady):
        spawn_ready("silent", argv, tmp_path / "silent.log", url=f"http://127.0.0.1:{free_port()}", timeout=1.5)
    pid = int(marker.read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_stop_kills_a_child_ignoring_sigterm_and_its_group_within_the_bound(tmp_path: Path) -> None:
    grandchild_pid = tmp_path / "grandchild"
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])\n"
        f"open({str(grandchild_pid)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(600)\n"
    )
    child = spawn("stubborn", [sys.executable, "-c", script], tmp_path / "stubborn.log")
    deadline = time.monotonic() + 20
    while not grandchild_pid.exists() or not grandchild_pid.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    started = time.monotonic()
    status = child.stop(timeout=1.0)
    assert status == -9
    assert time.monotonic() - started < 10
    gone = int(grandchild_pid.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{gone}").exists() and "Z" not in Path(f"/proc/{gone}/stat").read_text().split(")")[1][:3]:
        assert time.monotonic() < deadline, "the grandchild in the child's group survived"
        time.sleep(0.05)


def test_free_port_is_free_on_every_address() -> None:
    addresses = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
    port = free_port(addresses)
    for address in addresses:
        with socket.socket() as s:
            s.bind((address, port))


def test_serve_until_interrupted_returns_when_a_check_fails() -> None:
    import threading

    calls = []

    def check() -> None:
        calls.append(1)
        if len(calls) == 3:
            raise WorldError("sd stopped unexpectedly")

    with pytest.raises(WorldError, match="sd stopped"):
        serve_until_interrupted(check, threading.Event(), poll=0.01)
    assert len(calls) == 3


def test_wait_http_accepts_what_ok_accepts_even_a_401() -> None:
    from werkzeug.wrappers import Response

    from tenant_metrics.world import serve_wsgi, wait_http

    app = Response("no", status=401)
    with serve_wsgi(app) as url:
        assert wait_http(url, timeout=5, ok=lambda r: r.status_code == 401).status_code == 401
        with pytest.raises(NotReady, match="HTTP 401"):
            wait_http(url, timeout=0.5)
