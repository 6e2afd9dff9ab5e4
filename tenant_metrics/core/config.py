"""Reading settings from the environment: pure functions of a mapping, validated up front.

Each part keeps its own settings dataclass (broker/config.py, sd/config.py,
gateway/config.py) built from the helpers here, so a bad value is reported with the
variable's name before anything starts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tenant_metrics.core.bindings import candidates, database_url_from_bindings, read_vcap_services
from tenant_metrics.core.db import Timeouts
from tenant_metrics.core.errors import ConfigError

DEFAULT_SQLITE_FILE = "tenant-metrics.sqlite3"

T = TypeVar("T")


class Problems:
    """Collects every bad setting of a part, so one run of ``check`` names them all.

    ``read(get_int, env, "X", 1)`` returns the value, or ``default`` after noting the
    problem; ``raise_if_any()`` raises one ConfigError carrying every problem found.
    """

    def __init__(self) -> None:
        self.messages: list[str] = []

    def read(self, reader: Callable[..., T], *args: object, default: T | None = None, **kwargs: object) -> T | None:
        try:
            return reader(*args, **kwargs)
        except ConfigError as exc:
            self.messages.extend(exc.problems)
            return default

    def value(self, reader: Callable[..., T], *args: object, default: T, **kwargs: object) -> T:
        """Like ``read``, for a setting that has a fallback to continue with."""
        try:
            return reader(*args, **kwargs)
        except ConfigError as exc:
            self.messages.extend(exc.problems)
            return default

    def add(self, message: str) -> None:
        self.messages.append(message)

    def raise_if_any(self) -> None:
        if self.messages:
            raise ConfigError("; ".join(self.messages), tuple(self.messages))


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """The database URL and the timeouts that bound every wait on it (issue 14).

    Each timeout covers one fault (docs/operations.md § Database timeouts):
    connect: a host that drops packets; statement: a server that accepted the query and
    never answers; lock: a query queued behind another's lock; pool: every pooled
    connection in use; keepalives: a peer that vanished under an idle connection.
    ``db upgrade`` uses ``migration_statement_timeout`` instead (migrations and the wait
    for another instance's migration legitimately take longer).
    """

    url: str = field(repr=False)
    timeouts: Timeouts = field(default_factory=Timeouts)  # what db.make_engine applies

    @classmethod
    def from_env(cls, env: Mapping[str, str], cwd: str | None = None) -> DatabaseSettings:
        """DATABASE_URL (or VCAP_SERVICES) and the DB_* timeouts; every bad one is named."""
        p = Problems()
        url = p.read(database_url, env, cwd, default="")
        d = Timeouts()
        timeouts = Timeouts(
            connect_timeout=_seconds(p, env, "DB_CONNECT_TIMEOUT", d.connect_timeout),
            statement_timeout=_seconds(p, env, "DB_STATEMENT_TIMEOUT", d.statement_timeout),
            migration_statement_timeout=_seconds(p, env, "DB_MIGRATION_STATEMENT_TIMEOUT",
                                                 d.migration_statement_timeout),
            lock_timeout=_seconds(p, env, "DB_LOCK_TIMEOUT", d.lock_timeout),
            pool_timeout=_seconds(p, env, "DB_POOL_TIMEOUT", d.pool_timeout),
            keepalives_idle=p.value(get_int, env, "DB_KEEPALIVES_IDLE", d.keepalives_idle, minimum=1,
                                    default=d.keepalives_idle),
            keepalives_interval=p.value(get_int, env, "DB_KEEPALIVES_INTERVAL", d.keepalives_interval, minimum=1,
                                        default=d.keepalives_interval),
            keepalives_count=p.value(get_int, env, "DB_KEEPALIVES_COUNT", d.keepalives_count, minimum=1,
                                     default=d.keepalives_count),
        )
        p.raise_if_any()
        return cls(url=url or "", timeouts=timeouts)

    @property
    def is_postgresql(self) -> bool:
        return self.url.startswith("postgresql")


def _seconds(p: Problems, env: Mapping[str, str], name: str, default: float) -> float:
    return p.value(get_float, env, name, default, minimum=0.001, default=default)


def on_cloud_foundry(env: Mapping[str, str]) -> bool:
    return bool(env.get("VCAP_APPLICATION", "").strip())


def database_url(env: Mapping[str, str], cwd: str | None = None) -> str:
    """DATABASE_URL wins; on Cloud Foundry the bound PostgreSQL (never SQLite: an instance's
    disk is gone at the next restage); elsewhere a bound-looking VCAP_SERVICES if given,
    else a SQLite file in the working directory."""
    url = env.get("DATABASE_URL", "").strip()
    if url:
        return normalize_database_url(url)
    if on_cloud_foundry(env):
        return database_url_from_bindings(env)
    vcap = read_vcap_services(env)
    if vcap is not None and candidates(vcap):
        return database_url_from_bindings(env)
    base = Path(cwd or os.getcwd())
    return f"sqlite:///{base / DEFAULT_SQLITE_FILE}"


def normalize_database_url(url: str) -> str:
    """SQLAlchemy 2 refuses ``postgres://`` (what Cloud Foundry brokers hand out): use psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def get_str(env: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = env.get(name, "").strip()
    if value:
        return value
    if default is None:
        raise ConfigError(f"{name} is required")
    return default


def get_int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def get_float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if math.isnan(value) or value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {raw}")
    return value


def get_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def get_list(env: Mapping[str, str], name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    raw = env.get(name, "")
    items = tuple(part.strip() for part in raw.split(",") if part.strip())
    return items or default


def port(env: Mapping[str, str], default: int) -> int:
    value = get_int(env, "PORT", default, minimum=0)
    if value > 65535:
        raise ConfigError(f"PORT must be at most 65535, got {value}")
    return value
