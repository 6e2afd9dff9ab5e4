"""Targets on disk and over HTTP: atomic write-if-changed, and the same bytes for http_sd.

Prometheus re-reads file_sd files on change; a torn or empty file would drop every
target, so the new content goes to a temp file in the same directory, is fsynced, then
renamed over the old one (atomic on POSIX), and the directory is fsynced too.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from sd.targets import TargetGroup
from tenant_metrics.core import labels as L


def render(groups: Sequence[TargetGroup]) -> bytes:
    """Canonical JSON (stable key order, one group per line) so equal content is equal bytes."""
    lines = ",\n".join(
        "  " + json.dumps(g.to_json(), sort_keys=True, ensure_ascii=False) for g in groups
    )
    return ("[\n" + lines + "\n]\n" if groups else "[]\n").encode()


def rendered_keys(content: bytes) -> frozenset[str] | None:
    """The group keys (``targets.group_key``) of rendered targets; None if unreadable."""
    try:
        groups = json.loads(content)
        return frozenset(
            str(g.get("labels", {}).get(L.AIVEN_SERVICE_NAME) or ",".join(g["targets"]))
            for g in groups
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def write_if_changed(path: Path, content: bytes) -> bool:
    """Replace ``path`` atomically when its bytes differ; returns whether it wrote."""
    try:
        if path.read_bytes() == content:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True


class TargetsState:
    """The last good targets, shared between the loop (writer) and the HTTP server (reader)."""

    def __init__(self, initial: bytes | None = None) -> None:
        self._lock = threading.Lock()
        self._content = initial

    def set(self, content: bytes) -> None:
        with self._lock:
            self._content = content

    def get(self) -> bytes | None:
        with self._lock:
            return self._content
