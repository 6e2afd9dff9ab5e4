"""Tenant label enforcement on PromQL: parse, add the tenant matcher to every selector, print.

Pure: no HTTP, no clock, no I/O. The security argument, in order:

1. ``prescan`` bounds the query (length, bracket depth, operator count) *before* the parser
   sees it: promql-parser is quadratic in nesting and overflows its stack (killing the
   process, not raising) at about 10,000 nested operators.
2. The query is parsed by promql-parser; whatever it rejects is a 400.
3. ``_Printer`` walks the AST and *prints* a new query. Every vector selector (alone, inside
   a matrix selector, a subquery, a function argument, an aggregation, a binary operation,
   and each group of an ``or``-matcher) is printed with the tenant matcher first. The
   tenant matcher is *added*: a matcher the client wrote on the tenant label stays beside
   it, so ``{cf_space_guid="other"}`` becomes ``{cf_space_guid="mine",cf_space_guid="other"}``
   and selects nothing (the effect of prom-label-proxy's replace, without silently
   widening a ``!=``/``!~`` into an ``=``). Any AST node the printer does not know is
   refused (fail closed), never passed through.
4. We print ourselves because promql-parser's ``str()`` does not escape ``"`` or ``\\`` in
   label values (a printed query could mean something else than the parsed one) and
   drops sub-second durations.
5. The printed query is parsed again and printed again; the two prints must be equal
   (a fixpoint) and every selector of the re-parsed tree must carry the tenant matcher.
   So what we send upstream is exactly the tree we checked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache, partial
from typing import Any

import promql_parser as pp

from tenant_metrics.core.errors import InvalidInput

# Prometheus 2.x has holt_winters (renamed in 3.x); promql-parser 0.12 only knows the new
# name. Registration is process-global and additive; a repeat raises, hence the guard.
try:
    pp.register_extra_functions(
        [
            pp.Function(
                "holt_winters",
                [pp.ValueType.Matrix, pp.ValueType.Scalar, pp.ValueType.Scalar],
                pp.ValueType.Vector,
            )
        ]
    )
except ValueError:  # pragma: no cover - already registered in this process
    pass

_LEGACY_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_LEGACY_METRIC = METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_DURATION_UNITS = (
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
)
# MatchOp values are not hashable, so this is a list searched by equality.
_OPS = (
    (pp.MatchOp.Equal, "="),
    (pp.MatchOp.NotEqual, "!="),
    (pp.MatchOp.Re, "=~"),
    (pp.MatchOp.NotRe, "!~"),
)
# The pre-scan must see strings and comments exactly where promql-parser's lexer does:
# text wrongly taken for a string or a comment hides operators from the count (a string
# holding a tab, with the other quote character inside it, once did). So it mirrors the
# lexer: "..." and '...' with backslash escapes, `...` raw to the next backtick, "#" to
# the end of the line ("\n" or "\r"). Wherever the two could disagree, the query is
# refused: a control or line-separator character inside a string (it must be written as
# an escape) or inside a comment, and an unterminated string.
_SPECIAL = re.compile(r"[\"'`#]")
_QUOTED = {
    '"': re.compile(r'"(?:[^"\\\x00-\x1f\x7f\x85\u2028\u2029]|\\[^\x00-\x1f\x7f\x85\u2028\u2029])*"'),
    "'": re.compile(r"'(?:[^'\\\x00-\x1f\x7f\x85\u2028\u2029]|\\[^\x00-\x1f\x7f\x85\u2028\u2029])*'"),
    "`": re.compile(r"`[^`\x00-\x1f\x7f\x85\u2028\u2029]*`"),
}
_COMMENT = re.compile(r"#[^\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]*(?:[\r\n]|\Z)")
_BRACKETS = re.compile(r"[()\[\]{}]")
_NEGATIVE_AT = re.compile(r"@\s*-")
_OPERATORS = re.compile(r"==|!=|<=|>=|[-+*/%^<>]|\b(?:and|or|unless|atan2)\b", re.IGNORECASE)


class EnforcementError(InvalidInput):
    """The query cannot be enforced: a 400 for the client, never a pass-through."""


class LimitExceeded(InvalidInput):
    """The request is valid but larger than this gateway serves (HTTP 422)."""


@dataclass(frozen=True, slots=True)
class TenantMatcher:
    """The one label matcher every selector must carry: ``label="value"``."""

    label: str
    value: str

    def __post_init__(self) -> None:
        if not _LEGACY_LABEL.match(self.label) or not self.value:
            raise ValueError("tenant matcher needs a label name and a non-empty value")

    def render(self) -> str:
        return f"{self.label}={quote(self.value)}"


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """Bounds checked before parsing (see the module docstring, point 1)."""

    max_length: int = 16384
    max_depth: int = 64
    max_operators: int = 128
    # Longest range a matrix selector or subquery may read (fair use; Prometheus has none).
    max_range_seconds: int = 32 * 24 * 3600


DEFAULT_LIMITS = QueryLimits()


def prescan(query: str, limits: QueryLimits = DEFAULT_LIMITS) -> None:
    """Refuse, cheaply and before parsing, a query too long, too deep or with too many operators."""
    if len(query) > limits.max_length:
        raise EnforcementError(f"query is longer than {limits.max_length} characters")
    if "\x00" in query:
        raise EnforcementError("query contains a NUL character")
    code = _code_only(query)
    depth = deepest = 0
    for match in _BRACKETS.finditer(code):
        if match.group() in "([{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    if deepest > limits.max_depth:
        raise EnforcementError(f"query nests deeper than {limits.max_depth} levels")
    if _NEGATIVE_AT.search(code):
        # promql-parser panics reading a pre-1970 @ timestamp; Grafana never sends one.
        raise EnforcementError("@ timestamps before 1970 are not supported")
    operators = len(_OPERATORS.findall(code))
    if operators > limits.max_operators:
        raise EnforcementError(f"query has more than {limits.max_operators} operators")


def _code_only(query: str) -> str:
    """``query`` with every string replaced by ``""`` and every comment removed, as the lexer sees it."""
    parts = []
    pos = 0
    while True:
        found = _SPECIAL.search(query, pos)
        if found is None:
            parts.append(query[pos:])
            return "".join(parts)
        at = found.start()
        parts.append(query[pos:at])
        char = query[at]
        if char == "#":
            comment = _COMMENT.match(query, at)
            if comment is None:
                raise EnforcementError("control character in a comment")
            pos = comment.end()
            parts.append("\n")
            continue
        string = _QUOTED[char].match(query, at)
        if string is None:
            raise EnforcementError(
                "unterminated string, or a control character in a string (write it as an escape, like \\t)"
            )
        parts.append('""')
        pos = string.end()


def parse(query: str, limits: QueryLimits = DEFAULT_LIMITS) -> Any:
    """Prescan, then parse; every parser failure (a Rust panic included) becomes a 400."""
    prescan(query, limits)
    if not query.strip():
        raise EnforcementError("empty query")
    return _guarded(lambda: pp.parse(query))


def enforce(query: str, matcher: TenantMatcher, limits: QueryLimits = DEFAULT_LIMITS) -> str:
    """Return ``query`` rewritten so that every selector carries ``matcher``; raise EnforcementError."""
    printed: str = _guarded(
        lambda: _Printer(matcher, max_range=limits.max_range_seconds).expr(parse(query, limits))
    )
    _check_fixpoint(printed, matcher)
    return printed


# Dashboards send the same queries at every refresh, so a rewrite is remembered: a pure
# function of (query, matcher, limits), the tenant's matcher part of the key. Failures are
# not remembered (lru_cache does not cache exceptions). Long queries are not kept, which
# bounds the memory to about MEMO_SIZE x 2 x MEMO_MAX_QUERY.
MEMO_SIZE = 4096
MEMO_MAX_QUERY = 2048


@lru_cache(maxsize=MEMO_SIZE)
def _enforce_memo(query: str, matcher: TenantMatcher, limits: QueryLimits) -> str:
    return enforce(query, matcher, limits)


def enforce_memo(query: str, matcher: TenantMatcher, limits: QueryLimits = DEFAULT_LIMITS) -> str:
    """``enforce``, remembered for repeated queries (same result, same errors)."""
    if len(query) > MEMO_MAX_QUERY:
        return enforce(query, matcher, limits)
    return _enforce_memo(query, matcher, limits)


def enforce_selectors(
    selectors: Sequence[str], matcher: TenantMatcher, limits: QueryLimits = DEFAULT_LIMITS
) -> list[str]:
    """Enforce ``match[]`` series selectors; none at all means "the tenant's series only"."""
    if not selectors:
        return ["{" + matcher.render() + "}"]
    out = []
    for selector in selectors:
        expr = parse(selector, limits)
        if type(expr) is not pp.VectorSelector:
            raise EnforcementError("match[] must be a series selector, like up{job=\"x\"}")
        if _guarded(partial(_has_modifiers, expr)):
            raise EnforcementError("match[] must not carry offset or @ modifiers")
        printed = _guarded(partial(_Printer(matcher).expr, expr))
        _check_fixpoint(printed, matcher)
        out.append(printed)
    return out


def _has_modifiers(expr: Any) -> bool:
    return expr.offset is not None or expr.at is not None


def render(expr: Any) -> str:
    """Print an AST as PromQL without enforcing anything (for tests and tools)."""
    printed: str = _guarded(lambda: _Printer(None).expr(expr))
    return printed


def _check_fixpoint(printed: str, matcher: TenantMatcher) -> None:
    """The output must parse back to a tree that prints identically, every selector enforced."""
    again = _guarded(lambda: pp.parse(printed))
    checker = _Printer(matcher, check=True)
    if _guarded(lambda: checker.expr(again)) != printed:
        raise EnforcementError("query cannot be enforced safely (it does not round-trip)")


def _guarded(fn: Callable[[], Any]) -> Any:
    """Run ``fn``, turning parser errors and pyo3 panics (BaseException) into EnforcementError."""
    try:
        return fn()
    except (EnforcementError, LimitExceeded):
        raise
    except (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError, RecursionError) as exc:
        if isinstance(exc, RecursionError):
            raise EnforcementError("query nests too deeply") from exc
        raise
    except BaseException as exc:
        message = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        if type(exc).__name__ == "PanicException":
            message = "query uses a value the parser cannot represent"
        raise EnforcementError(f"cannot parse query: {message}") from exc


def quote(value: str) -> str:
    """A double-quoted PromQL string literal that both promql-parser and Prometheus read back as ``value``."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20 or 0x7F <= code <= 0x9F or code in (0x2028, 0x2029):
            # Control and line-separator characters are always escaped: the pre-scan
            # refuses them raw (see _QUOTED), so our own output stays acceptable to it.
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _label_name(name: str) -> str:
    return name if _LEGACY_LABEL.match(name) else quote(name)


def _label_list(names: Sequence[str]) -> str:
    return "(" + ", ".join(_label_name(n) for n in names) + ")"


def duration(delta: timedelta) -> str:
    """A Prometheus duration (``1h30m``, ``-5m``, ``250ms``) exactly equal to ``delta``."""
    total = delta // _MS
    if total * _MS != delta:
        raise EnforcementError("durations finer than a millisecond are not supported")
    sign = "-" if total < 0 else ""
    total = abs(total)
    if total == 0:
        return "0s"
    parts = []
    for unit, size in _DURATION_UNITS:
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return sign + "".join(parts)


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    return repr(float(value))


class _Printer:
    """Prints an AST as PromQL; with a matcher, every selector gets it (the enforcement).

    ``check=True`` additionally asserts that every selector already carries the matcher
    (used on the re-parsed output: defence in depth against a printing mistake).
    """

    def __init__(self, matcher: TenantMatcher | None, check: bool = False, max_range: float | None = None) -> None:
        self.matcher = matcher
        self.check = check
        self.max_range = max_range
        self._dispatch: dict[type, Callable[[Any], str]] = {
            pp.VectorSelector: self.vector,
            pp.MatrixSelector: self.matrix,
            pp.SubqueryExpr: self.subquery,
            pp.Call: self.call,
            pp.AggregateExpr: self.aggregate,
            pp.BinaryExpr: self.binary,
            pp.UnaryExpr: self.unary,
            pp.ParenExpr: lambda n: "(" + self.expr(n.expr) + ")",
            pp.NumberLiteral: lambda n: _number(n.val),
            pp.StringLiteral: lambda n: quote(n.val),
        }

    def expr(self, node: Any) -> str:
        handler = self._dispatch.get(type(node))
        if handler is None:
            # Fail closed: a node type we do not know might hide a selector.
            raise EnforcementError(f"unsupported expression: {type(node).__name__}")
        return handler(node)

    def vector(self, node: Any) -> str:
        return self._selector(node) + self._modifiers(node.at, node.offset)

    def matrix(self, node: Any) -> str:
        inner = node.vector_selector
        if type(inner) is not pp.VectorSelector:
            raise EnforcementError("unsupported matrix selector")
        self._check_range(node.range)
        return (
            self._selector(inner)
            + "["
            + duration(node.range)
            + "]"
            + self._modifiers(inner.at, inner.offset)
        )

    def subquery(self, node: Any) -> str:
        self._check_range(node.range)
        step = "" if node.step is None else duration(node.step)
        return (
            self.expr(node.expr)
            + "["
            + duration(node.range)
            + ":"
            + step
            + "]"
            + self._modifiers(node.at, node.offset)
        )

    def _check_range(self, span: timedelta) -> None:
        if self.max_range is not None and span.total_seconds() > self.max_range:
            raise LimitExceeded(f"a range in the query is longer than this gateway allows ({self.max_range:g}s)")

    def call(self, node: Any) -> str:
        name = node.func.name
        if not _LEGACY_LABEL.match(name):
            raise EnforcementError("unsupported function name")
        name = str(name)
        return name + "(" + ", ".join(self.expr(arg) for arg in node.args) + ")"

    def aggregate(self, node: Any) -> str:
        op = str(node.op)
        if not _LEGACY_LABEL.match(op):
            raise EnforcementError("unsupported aggregation")
        grouping = ""
        if node.modifier is not None:
            kind = node.modifier.type
            if kind == pp.AggModifierType.By:
                grouping = " by " + _label_list(node.modifier.labels)
            elif kind == pp.AggModifierType.Without:
                grouping = " without " + _label_list(node.modifier.labels)
            else:
                raise EnforcementError("unsupported aggregation modifier")
        args = self.expr(node.expr)
        if node.param is not None:
            args = self.expr(node.param) + ", " + args
        return f"{op}{grouping} ({args})"

    def binary(self, node: Any) -> str:
        op = str(node.op)
        if op not in _BINARY_OPS:
            raise EnforcementError("unsupported binary operator")
        return self.expr(node.lhs) + " " + op + self._bin_modifier(node.modifier) + " " + self.expr(node.rhs)

    def unary(self, node: Any) -> str:
        return "-" + self.expr(node.expr)

    def _bin_modifier(self, mod: Any) -> str:
        if mod is None:
            return ""
        out = ""
        if mod.return_bool:
            out += " bool"
        if mod.matching is not None:
            if mod.matching.type == pp.LabelModifierType.Include:
                out += " on" + _label_list(mod.matching.labels)
            elif mod.matching.type == pp.LabelModifierType.Exclude:
                out += " ignoring" + _label_list(mod.matching.labels)
            else:
                raise EnforcementError("unsupported vector matching")
        card = mod.card
        if card == pp.VectorMatchCardinality.ManyToOne:
            out += " group_left" + _label_list(mod.group_labels or [])
        elif card == pp.VectorMatchCardinality.OneToMany:
            out += " group_right" + _label_list(mod.group_labels or [])
        elif card not in (pp.VectorMatchCardinality.OneToOne, pp.VectorMatchCardinality.ManyToMany):
            raise EnforcementError("unsupported vector matching cardinality")
        fill = mod.fill_values
        if fill is not None and (fill.lhs is not None or fill.rhs is not None):
            raise EnforcementError("fill() modifiers are not supported")
        return out

    def _modifiers(self, at: Any, offset: timedelta | None) -> str:
        out = ""
        if at is not None:
            if at.type == pp.AtModifierType.Start:
                out += " @ start()"
            elif at.type == pp.AtModifierType.End:
                out += " @ end()"
            elif at.type == pp.AtModifierType.At and at.at is not None:
                millis = (at.at - _EPOCH) // _MS
                out += f" @ {millis // 1000}.{millis % 1000:03d}"
            else:
                raise EnforcementError("unsupported @ modifier")
        if offset is not None:
            out += " offset " + duration(offset)
        return out

    def _selector(self, node: Any) -> str:
        name = node.name
        if name is not None and not _LEGACY_METRIC.match(name):
            raise EnforcementError("unsupported metric name")
        matchers = node.matchers
        groups = [list(group) for group in matchers.or_matchers]
        if matchers.matchers:
            if groups:
                raise EnforcementError("mixed and/or label matchers are not supported")
            groups = [list(matchers.matchers)]
        if not groups:
            groups = [[]]
        rendered = " or ".join(self._group(group) for group in groups)
        return (name or "") + "{" + rendered + "}"

    def _group(self, group: list[Any]) -> str:
        parts = []
        carries = False
        tenant = self.matcher
        for m in group:
            op = next((text for known, text in _OPS if m.op == known), None)
            if op is None:
                raise EnforcementError("unsupported label matcher")
            if tenant is not None and op == "=" and m.name == tenant.label and m.value == tenant.value:
                carries = True
                continue  # printed once, first, below
            parts.append(f"{_label_name(m.name)}{op}{quote(m.value)}")
        if tenant is not None:
            if self.check and not carries:
                raise EnforcementError("internal: a selector lost the tenant matcher")
            parts.insert(0, tenant.render())
        return ",".join(parts)


_BINARY_OPS = frozenset(
    ["+", "-", "*", "/", "%", "^", "==", "!=", "<", ">", "<=", ">=", "and", "or", "unless", "atan2"]
)
