"""Reading settings from the environment: pure functions of a mapping, validated up front.

Each part keeps its own settings dataclass (broker/config.py, sd/config.py,
gateway/config.py) built from the helpers here, so a bad value is reported with the
variable's name before anything starts.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

from tenant_metrics.core.errors import ConfigError

DEFAULT_SQLITE_FILE = "tenant-metrics.sqlite3"


def database_url(env: Mapping[str, str], cwd: str | None = None) -> str:
    """DATABASE_URL wins; else the first PostgreSQL binding in VCAP_SERVICES; else a SQLite file."""
    url = env.get("DATABASE_URL", "").strip()
    if url:
        return normalize_database_url(url)
    vcap = _vcap_services(env)
    if vcap is not None:
        found = _first_postgres_uri(vcap)
        if found:
            return normalize_database_url(found)
    base = Path(cwd or os.getcwd())
    return f"sqlite:///{base / DEFAULT_SQLITE_FILE}"


def normalize_database_url(url: str) -> str:
    """SQLAlchemy 2 refuses ``postgres://`` (what Cloud Foundry brokers hand out): use psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _vcap_services(env: Mapping[str, str]) -> dict[str, object] | None:
    raw = env.get("VCAP_SERVICES")
    if not raw and env.get("VCAP_SERVICES_FILE_PATH"):
        try:
            raw = Path(env["VCAP_SERVICES_FILE_PATH"]).read_text()
        except OSError as exc:
            raise ConfigError(f"VCAP_SERVICES_FILE_PATH: cannot read: {exc.strerror}") from exc
    if not raw:
        return None
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise ConfigError("VCAP_SERVICES is not valid JSON") from exc
    if not isinstance(parsed, dict):
        raise ConfigError("VCAP_SERVICES must be a JSON object")
    return parsed


def _first_postgres_uri(vcap: Mapping[str, object]) -> str | None:
    for label, bindings in vcap.items():
        if not isinstance(bindings, list):
            continue
        for binding in bindings:
            if not isinstance(binding, dict):
                continue
            creds = binding.get("credentials") or {}
            uri = creds.get("uri") if isinstance(creds, dict) else None
            tags = [str(t).lower() for t in binding.get("tags") or []]
            is_pg = (
                "postgres" in label.lower()
                or "postgres" in tags
                or "postgresql" in tags
                or (isinstance(uri, str) and uri.startswith("postgres"))
            )
            if is_pg and isinstance(uri, str) and uri:
                return uri
    return None


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
