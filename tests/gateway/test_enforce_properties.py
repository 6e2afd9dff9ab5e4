"""Property tests: generated PromQL, every selector enforced, same tree, idempotent."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.enforce import QueryLimits, TenantMatcher, enforce, enforce_selectors, quote
from tests.gateway.enforce_support import every_selector_enforced, selector_groups

TENANT = TenantMatcher("cf_space_guid", "space-a")
WANTED = ("MatchOp.Equal", TENANT.label, TENANT.value)
LIMITS = QueryLimits(max_length=100000, max_depth=64, max_operators=256)

names = st.sampled_from(["up", "x", "http_requests_total", "a:b:c", "by", "on", "offset_x", "sum_x"])
label_names = st.sampled_from(["job", "instance", "cf_space_guid", "cf_organization_guid", "le", "__name__"])
# Values include what breaks naive printers: quotes, backslashes, braces, newlines, unicode.
values = st.one_of(
    st.sampled_from(["space-a", "space-b"]),
    st.text(alphabet=st.sampled_from(list('abc-_.*|"\\{}(),=~!\n\t é☃')), min_size=1, max_size=12),
)
ops = st.sampled_from(["=", "!=", "=~", "!~"])
durations = st.sampled_from(["1ms", "30s", "1m", "5m", "1h30m", "2d", "1w"])


def _regex_safe(op: str, value: str) -> str:
    # Regex matchers must compile; keep their values literal-ish.
    return value if op in ("=", "!=") else "".join(ch for ch in value if ch.isalnum() or ch in "-_") or "x"


@st.composite
def matcher(draw: st.DrawFn) -> str:
    op = draw(ops)
    return f"{draw(label_names)}{op}{quote(_regex_safe(op, draw(values)))}"


@st.composite
def vector(draw: st.DrawFn) -> str:
    name = draw(st.one_of(st.none(), names))
    groups = draw(st.lists(st.lists(matcher(), min_size=1, max_size=3), min_size=0, max_size=3))
    if name is None:
        # A selector without a name needs a matcher that cannot match the empty string.
        groups = [g + [f'job={quote(draw(values))}'] for g in groups] or [[f"job={quote('j')}"]]
    body = " or ".join(",".join(g) for g in groups)
    text = (name or "") + "{" + body + "}"
    if draw(st.booleans()):
        text += " offset " + draw(durations)
    if draw(st.integers(0, 4)) == 0:
        text += draw(st.sampled_from([" @ 100", " @ start()", " @ end()", " @ 1700000000.5"]))
    return text


@st.composite
def matrix(draw: st.DrawFn) -> str:
    name = draw(names)
    ms = draw(st.lists(matcher(), max_size=2))
    return f"{name}{{{','.join(ms)}}}[{draw(durations)}]" + (" offset " + draw(durations) if draw(st.booleans()) else "")


def expressions() -> st.SearchStrategy[str]:
    leaves = st.one_of(vector(), st.sampled_from(["1", "2.5", "NaN", "time()", "3"]))

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.builds(lambda a, op, b: f"{a} {op} {b}", inner, st.sampled_from(["+", "-", "*", "/", ">", "== bool", "and", "or", "unless"]), inner),
            st.builds(lambda a: f"({a})", inner),
            st.builds(lambda a: f"-{a}", inner),
            st.builds(lambda agg, a: f"{agg}({a})", st.sampled_from(["sum", "max", "count", "avg by (job)", "sum without (instance)"]), inner),
            st.builds(lambda f, m: f"{f}({m})", st.sampled_from(["rate", "increase", "max_over_time", "absent_over_time"]), matrix()),
            st.builds(lambda a, d: f"max_over_time(({a})[{d}:])", inner, durations),
            st.builds(lambda a: f"abs({a})", inner),
            st.builds(lambda a, b: f"{a} + on(job) group_left(instance) {b}", inner, inner),
            st.builds(lambda a: f'label_replace({a}, "cf_space_guid", "space-b", "", "")', inner),
        )

    return st.recursive(leaves, extend, max_leaves=8)


def _valid(query: str) -> bool:
    import promql_parser as pp

    try:
        pp.parse(query)
    except Exception:  # noqa: BLE001 - generated queries may be ill-typed; those are skipped
        return False
    return True


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(expressions().filter(_valid))
def test_every_selector_carries_the_tenant_and_rewriting_is_idempotent(query: str) -> None:
    out = enforce(query, TENANT, LIMITS)
    assert every_selector_enforced(out, TENANT)
    assert enforce(out, TENANT, LIMITS) == out
    before = selector_groups(query)
    after = selector_groups(out)
    assert len(before) == len(after)
    for original, rewritten in zip(before, after):
        assert rewritten[0] == WANTED
        assert rewritten[1:] == [m for m in original if m != WANTED]


@settings(max_examples=200, deadline=None)
@given(st.lists(vector(), max_size=4))
def test_match_lists_are_enforced(selectors: list[str]) -> None:
    plain = [s.split(" offset ")[0].split(" @ ")[0] for s in selectors]
    plain = [s for s in plain if _valid(s)]  # e.g. "on{}" is not a selector
    out = enforce_selectors(plain, TENANT, LIMITS)
    assert len(out) == max(1, len(plain))
    for selector in out:
        assert every_selector_enforced(selector, TENANT)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_escapes(text: str) -> None:
    """Any input either is refused or comes out with every selector enforced."""
    try:
        out = enforce(text, TENANT, LIMITS)
    except ValueError:
        return  # EnforcementError is an InvalidInput; refused is fine
    except Exception as exc:  # noqa: BLE001
        from tenant_metrics.core.errors import InvalidInput

        assert isinstance(exc, InvalidInput)
        return
    assert every_selector_enforced(out, TENANT)
