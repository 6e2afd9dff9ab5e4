"""Child processes we start, wait for and stop: only ever the PIDs (and process groups) we created.

Each child runs in a session of its own, so a Ctrl-C meant for the demo or pytest does not
reach it, and leftovers of its group (gunicorn workers) can be killed by the group id that
we created, never by name.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tenant_metrics.world.errors import WorldError
from tenant_metrics.world.ready import wait_http, wait_until


@dataclass(slots=True)
class Child:
    """One process we started, its log file and (for servers) its base URL."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        """Raise if the process has exited (it will never become ready)."""
        if self.proc.poll() is not None:
            raise WorldError(f"{self.name} exited with status {self.proc.returncode}; see {self.log_path}")

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (a gunicorn master then stops its workers), a bounded wait, then SIGKILL to
        the process group we created, while its leader is still unreaped (so the group id is
        still ours). Returns the exit status."""
        proc = self.proc
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.kill()
                proc.wait(timeout=10)
        return int(proc.returncode)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def spawn(name: str, argv: Sequence[str], log_path: Path, *, env: Mapping[str, str] | None = None,
          cwd: Path | None = None) -> Child:
    """Start ``argv`` in a new session, stdout and stderr to ``log_path`` (appended)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env=dict(env) if env is not None else None, cwd=str(cwd) if cwd else None)
    return Child(name, proc, log_path)


def spawn_ready(name: str, argv: Sequence[str], log_path: Path, *, url: str = "", ready_path: str = "",
                ready: Callable[[], object] | None = None, timeout: float = 60.0,
                env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Child:
    """``spawn``, then wait until ``url + ready_path`` answers 2xx (or ``ready()`` is truthy).

    If it exits or is not ready in time it is stopped, and the error names its log."""
    child = spawn(name, argv, log_path, env=env, cwd=cwd)
    child.url = url
    try:
        if ready is not None:
            wait_until(ready, timeout, name, alive=child.check_alive)
        else:
            wait_http(url + ready_path, timeout=timeout, alive=child.check_alive)
    except BaseException:
        child.stop()
        raise
    return child


@dataclass(slots=True)
class Children:
    """The processes one world started; stopped together, last started first."""

    started: list[Child] = field(default_factory=list)

    def add(self, child: Child) -> Child:
        self.started.append(child)
        return child

    def check_alive(self) -> None:
        for child in self.started:
            child.check_alive()

    def stop_all(self) -> None:
        while self.started:
            self.started.pop().stop()


@contextmanager
def children() -> Iterator[Children]:
    """A ``Children`` whose processes are all stopped on exit, error or not."""
    group = Children()
    try:
        yield group
    finally:
        group.stop_all()
