"""Finding the PostgreSQL database among a Cloud Foundry app's service bindings.

``VCAP_SERVICES`` (or the file ``VCAP_SERVICES_FILE_PATH`` names, with CF's
file-based-vcap-services feature) is a JSON object keyed by the offering's label, each
value a list of bindings with ``name`` (instance name), ``binding_name``, ``tags`` and
``credentials``. Real brokers put the database in different shapes:

- ``uri`` (``postgres://user:pass@host:5432/db``; GOV.UK's paas-rds-broker, most brokers);
- ``url`` (user-provided services, by convention);
- ``jdbcUrl`` / ``jdbcuri`` (``jdbc:postgresql://host:5432/db?user=..&password=..&ssl=true``;
  cloud-service-broker puts user and password in the query);
- discrete ``host``/``hostname``, ``port``, ``name``/``database``/``db_name``,
  ``username``/``user``, ``password``;

plus TLS material: ``sslmode``, ``require_ssl``, and a CA (``sslrootcert``,
``ca_certificate``, ``server_ca``...) as a path or as PEM text. PEM text is written to a
private file (0600 in a 0700 directory), because libpq only reads certificates from disk.

The choice is explicit: ``DATABASE_SERVICE_NAME`` (an instance name or a binding name)
picks one; without it exactly one candidate must exist. Guessing between two would point
some instances at one database and some at another.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from sqlalchemy.engine import URL

from tenant_metrics.core.errors import ConfigError

POSTGRES_SCHEMES = ("postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2")
_CA_KEYS = ("sslrootcert", "ca_certificate", "ca_cert", "server_ca", "server_ca_cert", "ca")
_CERT_KEYS = ("sslcert", "client_cert", "client_certificate")
_KEY_KEYS = ("sslkey", "client_key", "client_private_key")
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One binding that looks like PostgreSQL."""

    label: str
    instance_name: str
    binding_name: str | None
    credentials: Mapping[str, Any]

    def describe(self) -> str:
        named = f" (binding name {self.binding_name!r})" if self.binding_name else ""
        return f"{self.instance_name!r}{named} [{self.label}]"


def read_vcap_services(env: Mapping[str, str]) -> dict[str, Any] | None:
    """The parsed VCAP_SERVICES, from the variable or CF's file; None when neither is set."""
    raw = env.get("VCAP_SERVICES", "").strip()
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


def _str(creds: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = creds.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


def _url_scheme(creds: Mapping[str, Any]) -> str | None:
    for key in ("uri", "url", "jdbcUrl", "jdbcuri", "jdbc_url"):
        value = creds.get(key)
        if isinstance(value, str) and value:
            return urlsplit(value.removeprefix("jdbc:")).scheme.lower()
    return None


def _looks_like_postgres(label: str, binding: Mapping[str, Any], creds: Mapping[str, Any]) -> bool:
    tags = {str(t).lower() for t in binding.get("tags") or []}
    scheme = _url_scheme(creds)
    if scheme is not None:
        # a URL says what it is, whatever the label (a user-provided "db" with a mysql:// url is not ours)
        return scheme in POSTGRES_SCHEMES
    return "postgres" in label.lower() or bool(tags & {"postgres", "postgresql", "pg"})


def candidates(vcap: Mapping[str, Any]) -> list[Candidate]:
    found = []
    for label, bindings in vcap.items():
        if not isinstance(bindings, list):
            continue
        for binding in bindings:
            if not isinstance(binding, dict):
                continue
            creds = binding.get("credentials")
            if not isinstance(creds, dict) or not _looks_like_postgres(str(label), binding, creds):
                continue
            found.append(Candidate(
                label=str(label),
                instance_name=str(binding.get("instance_name") or binding.get("name") or "?"),
                binding_name=binding.get("binding_name") or None,
                credentials=creds,
            ))
    return found


def choose(found: list[Candidate], wanted: str | None) -> Candidate:
    """The one binding to use: by name when asked, else the only one; never a guess."""
    if wanted:
        named = [c for c in found if wanted in (c.instance_name, c.binding_name)]
        if len(named) == 1:
            return named[0]
        if not named:
            have = ", ".join(c.describe() for c in found) or "none"
            raise ConfigError(f"DATABASE_SERVICE_NAME={wanted!r} matches no PostgreSQL binding (bound: {have})")
        raise ConfigError(f"DATABASE_SERVICE_NAME={wanted!r} matches {len(named)} bindings: use a unique name")
    if not found:
        raise ConfigError("no PostgreSQL service is bound to this app: bind one (cf bind-service APP DB) "
                          "or set DATABASE_URL")
    if len(found) > 1:
        names = ", ".join(c.describe() for c in found)
        raise ConfigError(f"{len(found)} PostgreSQL bindings ({names}): set DATABASE_SERVICE_NAME to one of them")
    return found[0]


def _private_file(directory: Path, name: str, content: str) -> str:
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content if content.endswith("\n") else content + "\n")
    return str(path)


def _material(creds: Mapping[str, Any], keys: tuple[str, ...], name: str, workdir: list[Path]) -> str | None:
    """A certificate or key given as a path (used as is) or as PEM text (written privately)."""
    value = _str(creds, *keys)
    if value is None:
        return None
    if "-----BEGIN" not in value:
        return value
    if not workdir:
        workdir.append(Path(tempfile.mkdtemp(prefix="tenant-metrics-db-tls-")))  # 0700
    return _private_file(workdir[0], name, value.replace("\\n", "\n"))


def _from_url(raw: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Parts of a postgres:// or jdbc:postgresql:// URL, and its query parameters."""
    parts = urlsplit(raw.removeprefix("jdbc:"))
    if parts.scheme.lower() not in POSTGRES_SCHEMES:
        raise ConfigError(f"database binding URL has scheme {parts.scheme!r}, not postgres")
    query = dict(parse_qsl(parts.query, keep_blank_values=False))
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError("database binding URL has an invalid port") from exc
    fields = {
        "host": parts.hostname,
        "port": port,
        "database": unquote(parts.path.lstrip("/")) or None,
        "username": unquote(parts.username) if parts.username else query.pop("user", None),
        "password": unquote(parts.password) if parts.password else query.pop("password", None),
    }
    query.pop("user", None)
    query.pop("password", None)
    return fields, query


def to_url(candidate: Candidate) -> str:
    """The SQLAlchemy URL (psycopg 3) for a binding, TLS settings included."""
    creds = candidate.credentials
    raw = _str(creds, "uri", "url", "jdbcUrl", "jdbcuri", "jdbc_url")
    fields: dict[str, Any]
    params: dict[str, str]
    if raw:
        fields, params = _from_url(raw)
    else:
        fields, params = {}, {}
    # discrete fields fill what the URL lacks (and are all there is for some brokers)
    fields["host"] = fields.get("host") or _str(creds, "host", "hostname")
    port = fields.get("port") or _str(creds, "port")
    fields["database"] = fields.get("database") or _str(creds, "name", "database", "db_name", "dbname")
    fields["username"] = fields.get("username") or _str(creds, "username", "user")
    fields["password"] = fields.get("password") or _str(creds, "password")
    if not fields["host"] or not fields["database"]:
        raise ConfigError(f"database binding {candidate.describe()} has no host or database name")
    try:
        port_number = int(port) if port else None
    except ValueError as exc:
        raise ConfigError(f"database binding {candidate.describe()} has an invalid port") from exc

    ssl = params.pop("ssl", None)  # JDBC's ssl=true
    sslmode = _str(creds, "sslmode") or params.pop("sslmode", None)
    workdir: list[Path] = []
    rootcert = _material(creds, _CA_KEYS, "root.crt", workdir) or params.pop("sslrootcert", None)
    cert = _material(creds, _CERT_KEYS, "client.crt", workdir) or params.pop("sslcert", None)
    key = _material(creds, _KEY_KEYS, "client.key", workdir) or params.pop("sslkey", None)
    if sslmode is None:
        if rootcert:
            sslmode = "verify-ca"  # a CA given for nothing would be a surprise
        elif ssl in ("true", "1") or creds.get("require_ssl") in (True, "true"):
            sslmode = "require"
    if sslmode is not None and sslmode not in _SSL_MODES:
        raise ConfigError(f"database binding {candidate.describe()}: unknown sslmode {sslmode!r}")
    query = {k: v for k, v in {"sslmode": sslmode, "sslrootcert": rootcert, "sslcert": cert,
                                "sslkey": key}.items() if v}
    # JDBC-only parameters (sslfactory, loggerLevel, ...) mean nothing to libpq: dropped.
    url = URL.create("postgresql+psycopg", username=fields["username"], password=fields["password"],
                     host=fields["host"], port=port_number, database=fields["database"], query=query)
    return url.render_as_string(hide_password=False)


def database_url_from_bindings(env: Mapping[str, str]) -> str:
    """The database of a Cloud Foundry app, from its bindings; a ConfigError when there is none
    or the choice is ambiguous. Never falls back to SQLite: that would lose data at restage."""
    vcap = read_vcap_services(env) or {}
    wanted = env.get("DATABASE_SERVICE_NAME", "").strip() or None
    return to_url(choose(candidates(vcap), wanted))
