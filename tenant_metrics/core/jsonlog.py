"""JSON log lines on stdout, one object per line, with secrets scrubbed."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from contextvars import ContextVar
from typing import Any

import orjson

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# Anything that looks like a credential is scrubbed before a line is written, whatever
# logged it (our code, openbrokerapi's request logger, werkzeug, gunicorn).
_SECRET_PATTERNS = (
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(basic|bearer)\s+[^\s'\",}]+"), r"\1\2 [REDACTED]"),
    (re.compile(r"(?i)((?:password|secret|token|api_key|apikey)['\"]?\s*[:=]\s*['\"]?)[^\s'\",}&]+"), r"\1[REDACTED]"),
    (re.compile(r"(?i)(https?://[^:/\s@]+:)[^@\s/]+@"), r"\1[REDACTED]@"),
    # A credential quoted without its header name (an HTTP parser's error quotes the bad line).
    (re.compile(r"(?i)\b(basic|bearer)\s+(?!\[REDACTED\])[A-Za-z0-9+/._~-]{16,}=*"), r"\1 [REDACTED]"),
)

_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


# One cheap search first: most lines hold none of the words the patterns need.
_MAYBE_SECRET = re.compile(r"(?i)authorization|password|secret|token|api_?key|://|basic|bearer")


def scrub(text: str) -> str:
    if not _MAYBE_SECRET.search(text):
        return text
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


_SECRET_KEYS = re.compile(r"(?i)password|secret|token|authorization|api_key|apikey|credential")


def _scrub_value(key: str, value: Any) -> Any:
    """Fields passed with ``extra=`` get the same treatment as the message."""
    if _SECRET_KEYS.search(key):
        return "[REDACTED]"
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrub_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub_value(key, v) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = _scrub_value(key, value)
        if record.exc_info:
            entry["exc"] = scrub(self.formatException(record.exc_info))
        try:
            return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except (TypeError, orjson.JSONEncodeError):  # e.g. an int beyond 64 bits
            return json.dumps(entry, default=str)


def json_handler() -> logging.Handler:
    """A handler writing scrubbed JSON lines to stdout."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    return handler


def configure(level: str = "INFO") -> None:
    """Route every logger to stdout as JSON lines. Safe to call more than once."""
    handler = json_handler()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # openbrokerapi's request logger prints headers (the Authorization header included)
    # at DEBUG; keep it at INFO whatever the root level is.
    logging.getLogger("openbrokerapi").setLevel(max(logging.INFO, root.level))
    # Alembic narrates every plugin it loads at INFO; only its warnings are news.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))


def gunicorn_logconfig(level: str, quiet: tuple[str, ...] = ()) -> dict[str, Any]:
    """gunicorn's ``logconfig_dict``: its own lines (boot, worker exits, "Error handling
    request", which quotes a malformed request's raw headers) as scrubbed JSON on stdout,
    like every other line. ``quiet`` loggers are held at WARNING."""
    stdout = {"handlers": ["stdout"], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "tenant_metrics.core.jsonlog.JsonFormatter"}},
        "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}},
        "root": {"level": level.upper(), "handlers": ["stdout"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", **stdout},
            "gunicorn.access": {"level": "WARNING", **stdout},
            **{name: {"level": "WARNING"} for name in quiet},
        },
    }
