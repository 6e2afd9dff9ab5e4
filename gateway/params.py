"""Reading a Prometheus API request's parameters the way the gateway can vouch for.

Prometheus reads parameters from the URL *and* a form body (and from multipart bodies),
merging ``match[]`` from both. The gateway reads them once, here, with stricter rules
(a single-valued parameter given twice is refused, multipart is refused), validates
every value it will forward, and the handlers rebuild the upstream request from the
validated values only: nothing the client sent is forwarded as it was sent.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime

import promql_parser as pp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from multidict import MultiDict

from gateway.enforce import LimitExceeded
from tenant_metrics.core.errors import InvalidInput

__all__ = ["LimitExceeded", "Params", "parse_duration", "parse_limit", "parse_time", "read_params"]

_FORM = "application/x-www-form-urlencoded"
_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\Z")
_DURATION = re.compile(r"(\d+(ms|s|m|h|d|w|y))+\Z")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
MAX_PARAM_VALUES = 64


@dataclass(frozen=True, slots=True)
class Params:
    """URL and form parameters, merged; ``single`` refuses repeats, ``many`` concatenates."""

    values: MultiDict[str]

    def single(self, name: str, required: bool = False) -> str | None:
        found = self.values.getall(name, [])
        if len(found) > 1:
            raise InvalidInput(f"parameter {name!r} given more than once")
        if not found or found[0] == "":
            if required:
                raise InvalidInput(f"missing parameter {name!r}")
            return None
        return found[0]

    def many(self, name: str) -> list[str]:
        found = self.values.getall(name, [])
        if len(found) > MAX_PARAM_VALUES:
            raise InvalidInput(f"too many {name!r} parameters (at most {MAX_PARAM_VALUES})")
        return found


async def read_params(request: web.Request) -> Params:
    """Merge URL and (urlencoded) body parameters; refuse any other body."""
    merged: MultiDict[str] = MultiDict(request.query)
    if request.method == "POST" and request.headers.get("Content-Type"):
        mimetype = request.content_type
        if mimetype != _FORM:
            raise InvalidInput(f"POST bodies must be {_FORM}, not {mimetype[:64]}")
        try:
            form = await request.post()
        except (UnicodeDecodeError, ValueError, LookupError) as exc:  # LookupError: unknown charset
            raise InvalidInput("the form body is not valid UTF-8 form data") from exc
        except (web.HTTPException, HttpProcessingError, RequestPayloadError) as exc:
            if isinstance(exc, web.HTTPRequestEntityTooLarge):
                raise
            # A body that does not decode as its Content-Encoding says, or is cut short.
            raise InvalidInput("the request body cannot be read (check Content-Encoding)") from exc
        for key, value in form.items():
            if not isinstance(value, str):  # a file part: only multipart has those
                raise InvalidInput(f"POST bodies must be {_FORM}")
            merged.add(key, value)
    return Params(merged)


def parse_time(value: str, name: str) -> float:
    """A Prometheus timestamp: Unix seconds (float) or RFC 3339."""
    if _NUMBER.match(value.strip()):
        t = float(value)
        if math.isfinite(t):
            return t
    else:
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed.timestamp()
    raise InvalidInput(f'invalid parameter "{name}": cannot parse {value[:64]!r} to a valid timestamp')


def format_time(t: float) -> str:
    return f"{t:.3f}"


def parse_duration(value: str, name: str) -> float:
    """Seconds as a float or a Prometheus duration (``30s``, ``1m30s``); must be > 0."""
    text = value.strip()
    seconds: float | None = None
    if _NUMBER.match(text):
        seconds = float(text)
    elif len(text) <= 32 and _DURATION.match(text):
        try:
            seconds = pp.parse_duration(text).total_seconds()
        except ValueError:
            seconds = None
    if seconds is None or not math.isfinite(seconds):
        raise InvalidInput(f'invalid parameter "{name}": cannot parse {value[:64]!r} to a valid duration')
    if seconds <= 0:
        raise InvalidInput(f'invalid parameter "{name}": zero or negative duration is not accepted')
    return seconds


def format_seconds(seconds: float) -> str:
    """Whole seconds as a duration ("15s"); fractions as plain float seconds ("0.25"), because
    Prometheus's duration syntax has no fractions ("1.5s" does not parse) but floats do."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:.6f}".rstrip("0").rstrip(".")


def parse_limit(value: str | None) -> str | None:
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 9:  # "١٢".isdigit() is True
        raise InvalidInput('invalid parameter "limit": must be a non-negative integer')
    return str(int(value))
