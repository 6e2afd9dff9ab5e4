"""A TCP proxy that fails the way real networks do: pass, reset, or blackhole.

Put it between one of our processes and a dependency (PostgreSQL, Prometheus) and
switch its mode while traffic flows:

- ``pass``: bytes flow both ways (the default);
- ``reset``: new connections are accepted and reset at once; existing ones are reset;
- ``blackhole``: new connections are accepted and never answered; bytes on existing
  connections are swallowed in both directions (a partition, a stalled peer, a
  failover that moved the address). Nothing is closed, so only the client's own
  timeouts end the wait.

Back to ``pass``, connections opened during a blackhole stay dead (as after a real
partition, their bytes are lost) while new connections flow again.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["pass", "reset", "blackhole"]
_BUFFER = 65536


@dataclass(eq=False)
class _Pair:
    client: socket.socket
    upstream: socket.socket | None
    dead: bool = False  # opened or caught in a blackhole: its bytes are dropped for good
    closed: bool = field(default=False)


def _reset(sock: socket.socket) -> None:
    """Close with RST rather than FIN (SO_LINGER 0)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class FaultProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to ``target``; ``mode`` switches faults."""

    def __init__(self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server((listen_host, 0))
        self._listener.setblocking(False)
        self.host, self.port = self._listener.getsockname()[:2]
        self._mode: Mode = "pass"
        self._pairs: list[_Pair] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"fault-proxy-{self.port}", daemon=True)
        self.accepted = 0

    # -- control ---------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with self._lock:
            for pair in self._pairs:
                self._close_pair(pair)
            self._pairs.clear()
        self._listener.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def mode(self) -> Mode:
        return self._mode

    def set_mode(self, mode: Mode) -> None:
        if mode not in ("pass", "reset", "blackhole"):
            raise ValueError(f"unknown mode {mode!r}")
        with self._lock:
            self._mode = mode
            for pair in list(self._pairs):
                if mode == "reset":
                    self._close_pair(pair, reset=True)
                elif mode == "blackhole":
                    pair.dead = True
            self._pairs = [p for p in self._pairs if not p.closed]

    @property
    def open_connections(self) -> int:
        with self._lock:
            return sum(1 for p in self._pairs if not p.closed)

    # -- the loop --------------------------------------------------------------------

    def _close_pair(self, pair: _Pair, reset: bool = False) -> None:
        if pair.closed:
            return
        pair.closed = True
        for sock in (pair.client, pair.upstream):
            if sock is None:
                continue
            if reset:
                _reset(sock)
            else:
                sock.close()

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        self.accepted += 1
        mode = self._mode
        if mode == "reset":
            _reset(client)
            return
        if mode == "blackhole":
            with self._lock:
                self._pairs.append(_Pair(client, None, dead=True))
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _reset(client)
            return
        client.setblocking(False)
        upstream.setblocking(False)
        with self._lock:
            self._pairs.append(_Pair(client, upstream))

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                pairs = [p for p in self._pairs if not p.closed]
            readers: list[socket.socket] = [self._listener]
            owner: dict[socket.socket, _Pair] = {}
            for pair in pairs:
                for sock in (pair.client, pair.upstream):
                    if sock is not None:
                        readers.append(sock)
                        owner[sock] = pair
            try:
                ready, _, _ = select.select(readers, [], [], 0.05)
            except (OSError, ValueError):
                continue  # a socket closed by set_mode between listing and select
            for sock in ready:
                if sock is self._listener:
                    self._accept()
                    continue
                pair = owner[sock]
                with self._lock:
                    if pair.closed:
                        continue
                    try:
                        data = sock.recv(_BUFFER)
                    except OSError:
                        data = b""
                    if pair.dead or self._mode == "blackhole":
                        pair.dead = True
                        if not data:  # the peer gave up: let go of our side too
                            self._close_pair(pair)
                        continue  # swallowed
                    if not data:
                        self._close_pair(pair)
                        continue
                    other = pair.upstream if sock is pair.client else pair.client
                    try:
                        assert other is not None
                        other.setblocking(True)
                        other.sendall(data)
                        other.setblocking(False)
                    except OSError:
                        self._close_pair(pair, reset=True)
            with self._lock:
                self._pairs = [p for p in self._pairs if not p.closed]
