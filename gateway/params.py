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

from gateway.enforce import METRIC_NAME, LimitExceeded
from gateway.filters import RuleQuery
from tenant_metrics.core.errors import InvalidInput

__all__ = [
    "LimitExceeded", "Params", "Rebuilt", "instant_time", "limit", "metric_name", "parse_duration", "parse_limit",
    "parse_time", "query_timeout", "range_window", "read_params", "rule_query", "time_range",
]

Rebuilt = list[tuple[str, str]]  # upstream parameters, in order, from validated values only

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


# --- rebuilding: validated values, printed the one way the gateway sends them ------------


def instant_time(params: Params) -> Rebuilt:
    """``time`` of an instant query, if given."""
    at = params.single("time")
    return [("time", format_time(parse_time(at, "time")))] if at else []


def time_range(params: Params, required: bool = False) -> Rebuilt:
    """``start`` and ``end``, each if given (both if ``required``); end must not be before start."""
    out = []
    start = params.single("start", required=required)
    end = params.single("end", required=required)
    start_t = parse_time(start, "start") if start else None
    end_t = parse_time(end, "end") if end else None
    if start_t is not None and end_t is not None and end_t < start_t:
        raise InvalidInput('invalid parameter "end": end timestamp must not be before start time')
    if start_t is not None:
        out.append(("start", format_time(start_t)))
    if end_t is not None:
        out.append(("end", format_time(end_t)))
    return out


def range_window(params: Params, max_range_seconds: int, max_points: int) -> Rebuilt:
    """``start``, ``end`` and ``step`` of a range query, all required, within the gateway's bounds."""
    start = parse_time(params.single("start", required=True) or "", "start")
    end = parse_time(params.single("end", required=True) or "", "end")
    step = parse_duration(params.single("step", required=True) or "", "step")
    if end < start:
        raise InvalidInput('invalid parameter "end": end timestamp must not be before start time')
    if end - start > max_range_seconds:
        raise LimitExceeded(f"query range is longer than this gateway allows ({max_range_seconds}s)")
    if (end - start) / step + 1 > max_points:
        raise InvalidInput(
            f"exceeded maximum resolution of {max_points} points per timeseries. "
            "Try decreasing the query resolution (?step=XX)"
        )
    return [("start", format_time(start)), ("end", format_time(end)), ("step", format_seconds(step))]


def query_timeout(params: Params, ours: float) -> str:
    """The ``timeout`` sent upstream: the client's, if given, but never more than ours."""
    given = params.single("timeout")
    seconds = min(ours, parse_duration(given, "timeout")) if given else ours
    return format_seconds(seconds)


def limit(params: Params) -> Rebuilt:
    """``limit``, if given."""
    value = parse_limit(params.single("limit"))
    return [("limit", value)] if value is not None else []


def metric_name(params: Params) -> str | None:
    """``metric``, if given: a metric name and nothing else (it is sent upstream as is)."""
    metric = params.single("metric")
    if metric is not None and not METRIC_NAME.match(metric):
        raise InvalidInput('invalid parameter "metric"')
    return metric


_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})  # Go's strconv.ParseBool, as Prometheus
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def rule_query(params: Params) -> RuleQuery:
    """The filters of /api/v1/rules; applied by the gateway after its own, never sent upstream.

    ``exclude_alerts`` (Prometheus 2.49+; 2.42 ignores it) is applied by the gateway too."""
    kind = params.single("type")
    if kind is not None and kind not in ("alert", "record"):
        raise InvalidInput(f'invalid parameter "type": not supported value {kind[:64]!r}')
    exclude = params.single("exclude_alerts")
    if exclude is not None and exclude not in _TRUE | _FALSE:
        raise InvalidInput('invalid parameter "exclude_alerts": must be true or false')
    return RuleQuery(
        type=kind,
        names=frozenset(params.many("rule_name[]")),
        groups=frozenset(params.many("rule_group[]")),
        files=frozenset(params.many("file[]")),
        exclude_alerts=exclude in _TRUE,
    )
