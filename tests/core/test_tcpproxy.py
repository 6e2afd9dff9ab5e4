"""The fault proxy itself, against real PostgreSQL: it passes, resets and blackholes."""

from __future__ import annotations

import socket
import time

import psycopg
import pytest

from tenant_metrics.fakes.tcpproxy import FaultProxy


def _connect(proxy: FaultProxy, timeout: int = 2) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(host=proxy.host, port=proxy.port, user="postgres", dbname="test",
                           connect_timeout=timeout)


def test_pass_then_blackhole_then_pass() -> None:
    with FaultProxy("127.0.0.1", 5432) as proxy:
        conn = _connect(proxy)
        assert conn.execute("SELECT 1").fetchone() == (1,)
        proxy.set_mode("blackhole")
        conn.close()  # sends Terminate, which the blackhole swallows; nothing waits for it
        # a new connection waits until the client's own timeout, then fails
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            _connect(proxy, timeout=1)
        assert 0.9 <= time.monotonic() - started < 5
        proxy.set_mode("pass")
        with _connect(proxy) as conn:
            assert conn.execute("SELECT 2").fetchone() == (2,)


def test_blackhole_swallows_bytes_on_an_open_connection() -> None:
    with FaultProxy("127.0.0.1", 5432) as proxy:
        with socket.create_connection((proxy.host, proxy.port), timeout=5) as sock:
            proxy.set_mode("blackhole")
            time.sleep(0.1)
            sock.sendall(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")  # SSLRequest: PostgreSQL would answer one byte
            sock.settimeout(0.5)
            with pytest.raises(TimeoutError):
                sock.recv(1)


def test_reset_refuses_new_and_breaks_open_connections() -> None:
    with FaultProxy("127.0.0.1", 5432) as proxy:
        conn = _connect(proxy)
        proxy.set_mode("reset")
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
        conn.close()
        with pytest.raises(psycopg.OperationalError):
            _connect(proxy)
        assert proxy.accepted >= 2
