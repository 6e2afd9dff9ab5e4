"""Table-driven tests of PromQL enforcement: expected rewrites, attacks, refusals, limits."""

from __future__ import annotations

import subprocess
import sys

import promql_parser as pp
import pytest

from gateway.enforce import (
    EnforcementError,
    QueryLimits,
    TenantMatcher,
    duration,
    enforce,
    enforce_memo,
    enforce_selectors,
    prescan,
    quote,
    render,
)
from tests.gateway.enforce_support import every_selector_enforced, selector_count, selector_groups

TENANT = TenantMatcher("cf_space_guid", "space-a")
T = 'cf_space_guid="space-a"'

# (query, exact expected output)
REWRITES = [
    ("up", f"up{{{T}}}"),
    ("up{}", f"up{{{T}}}"),
    ('up{job="x"}', f'up{{{T},job="x"}}'),
    ('{__name__="up"}', f'{{{T},__name__="up"}}'),
    ('{__name__=~"up|down"}', f'{{{T},__name__=~"up|down"}}'),
    ('up{job!="x"}', f'up{{{T},job!="x"}}'),
    ('up{job=~"x.*"}', f'up{{{T},job=~"x.*"}}'),
    ('up{job!~"x.*"}', f'up{{{T},job!~"x.*"}}'),
    ("rate(http_requests_total[5m])", f"rate(http_requests_total{{{T}}}[5m])"),
    ("rate(x[1m30s])", f"rate(x{{{T}}}[1m30s])"),
    ("x offset 5m", f"x{{{T}}} offset 5m"),
    ("x offset -5m", f"x{{{T}}} offset -5m"),
    ("x offset 1ms", f"x{{{T}}} offset 1ms"),
    ("x @ 100", f"x{{{T}}} @ 100.000"),
    ("x @ 100.25", f"x{{{T}}} @ 100.250"),
    ("x @ start()", f"x{{{T}}} @ start()"),
    ("x @ end()", f"x{{{T}}} @ end()"),
    ("x[5m] @ 10 offset 1m", f"x{{{T}}}[5m] @ 10.000 offset 1m"),
    ("x[5m] offset 1m @ 10", f"x{{{T}}}[5m] @ 10.000 offset 1m"),
    ("sum(x)", f"sum (x{{{T}}})"),
    ("sum by (job) (x)", f"sum by (job) (x{{{T}}})"),
    ("sum(x) by (job)", f"sum by (job) (x{{{T}}})"),
    ("sum without (instance) (x)", f"sum without (instance) (x{{{T}}})"),
    ("sum by () (x)", f"sum by () (x{{{T}}})"),
    ("topk(3, x)", f"topk (3.0, x{{{T}}})"),
    ("bottomk(1, x)", f"bottomk (1.0, x{{{T}}})"),
    ("quantile(0.9, x)", f"quantile (0.9, x{{{T}}})"),
    ('count_values("v", x)', f'count_values ("v", x{{{T}}})'),
    ("topk(scalar(y), x)", f"topk (scalar(y{{{T}}}), x{{{T}}})"),
    ("a + b", f"a{{{T}}} + b{{{T}}}"),
    ("a - b * c", f"a{{{T}}} - b{{{T}}} * c{{{T}}}"),
    ("(a - b) * c", f"(a{{{T}}} - b{{{T}}}) * c{{{T}}}"),
    ("a / on(job) b", f"a{{{T}}} / on(job) b{{{T}}}"),
    ("a / ignoring(job) b", f"a{{{T}}} / ignoring(job) b{{{T}}}"),
    ("a * on(job) group_left(x) b", f"a{{{T}}} * on(job) group_left(x) b{{{T}}}"),
    ("a * on(job) group_right b", f"a{{{T}}} * on(job) group_right() b{{{T}}}"),
    ("a > bool 1", f"a{{{T}}} > bool 1.0"),
    ("a == b", f"a{{{T}}} == b{{{T}}}"),
    ("a and b", f"a{{{T}}} and b{{{T}}}"),
    ("a or b", f"a{{{T}}} or b{{{T}}}"),
    ("a unless b", f"a{{{T}}} unless b{{{T}}}"),
    ("a or on(job) b", f"a{{{T}}} or on(job) b{{{T}}}"),
    ("a atan2 b", f"a{{{T}}} atan2 b{{{T}}}"),
    ("a ^ 2", f"a{{{T}}} ^ 2.0"),
    ("-a", f"-a{{{T}}}"),
    ("- -a", f"--a{{{T}}}"),
    ("1 + 2", "1.0 + 2.0"),
    ("-1 ^ 2", "-1.0 ^ 2.0"),
    ("2 ^ -1", "2.0 ^ -1.0"),
    ("NaN", "NaN"),
    ("Inf", "Inf"),
    ("-Inf", "-Inf"),
    ("0x10", "16.0"),
    ("1e3", "1000.0"),
    ('"literal"', '"literal"'),
    ("time()", "time()"),
    ("vector(1)", "vector(1.0)"),
    ("pi()", "pi()"),
    ("scalar(x)", f"scalar(x{{{T}}})"),
    ("absent(nothing)", f"absent(nothing{{{T}}})"),
    ("absent_over_time(nothing[5m])", f"absent_over_time(nothing{{{T}}}[5m])"),
    ("x[5m:1m]", f"x{{{T}}}[5m:1m]"),
    ("x[5m:]", f"x{{{T}}}[5m:]"),
    ("max_over_time(rate(x[1m])[1h:5m])", f"max_over_time(rate(x{{{T}}}[1m])[1h:5m])"),
    ("rate(x[1m])[30m:1m] offset 1h", f"rate(x{{{T}}}[1m])[30m:1m] offset 1h"),
    ("(x)[5m:] @ end()", f"(x{{{T}}})[5m:] @ end()"),
    ("sum(rate(x[5m]))[1h:]", f"sum (rate(x{{{T}}}[5m]))[1h:]"),
    (
        'label_replace(x, "dst", "$1", "src", "(.*)")',
        f'label_replace(x{{{T}}}, "dst", "$1", "src", "(.*)")',
    ),
    ('label_join(x, "d", ",", "a", "b")', f'label_join(x{{{T}}}, "d", ",", "a", "b")'),
    (
        "histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))",
        f"histogram_quantile(0.99, sum by (le) (rate(h_bucket{{{T}}}[5m])))",
    ),
    ("holt_winters(x[5m], 0.5, 0.5)", f"holt_winters(x{{{T}}}[5m], 0.5, 0.5)"),
    ("predict_linear(x[1h], 3600)", f"predict_linear(x{{{T}}}[1h], 3600.0)"),
    ("quantile_over_time(0.5, x[5m])", f"quantile_over_time(0.5, x{{{T}}}[5m])"),
    ("clamp(x, 0, 1)", f"clamp(x{{{T}}}, 0.0, 1.0)"),
    ("round(x, 0.1)", f"round(x{{{T}}}, 0.1)"),
    ("timestamp(x)", f"timestamp(x{{{T}}})"),
    ("sort_desc(x)", f"sort_desc(x{{{T}}})"),
    ("x # a comment {cf_space_guid=\"space-b\"}", f"x{{{T}}}"),
    ("x # comment\r + y", f"x{{{T}}} + y{{{T}}}"),
    ("x:recording:rule", f"x:recording:rule{{{T}}}"),
    ("x offset 1y2w3d4h5m6s7ms", f"x{{{T}}} offset 1y2w3d4h5m6s7ms"),
    ("x offset 90s", f"x{{{T}}} offset 1m30s"),
    ('x{a="1" or b="2"}', f'x{{{T},a="1" or {T},b="2"}}'),
    ('{a="1" or b="2"}', f'{{{T},a="1" or {T},b="2"}}'),
    ('x{job="a\\"b"}', f'x{{{T},job="a\\"b"}}'),
    ('x{job="back\\\\slash"}', f'x{{{T},job="back\\\\slash"}}'),
    ("x{job='single \"quoted\"'}", f'x{{{T},job="single \\"quoted\\""}}'),
    ('x{job="\\n\\t"}', f'x{{{T},job="\\n\\t"}}'),
    ('x{job="\\u0041\\x42\\103"}', f'x{{{T},job="ABC"}}'),
    ('x{job="é"}', f'x{{{T},job="é"}}'),
    ('x{job="\\x01"}', f'x{{{T},job="\\u0001"}}'),
    ('x{"dotted.name"="v"}', f'x{{{T},"dotted.name"="v"}}'),
    ('sum by ("dotted.name") (x)', f'sum by ("dotted.name") (x{{{T}}})'),
]

# The tenant label named by the client: kept beside ours, so it can only narrow.
FOREIGN = [
    ('x{cf_space_guid="space-b"}', f'x{{{T},cf_space_guid="space-b"}}'),
    ('x{cf_space_guid!="space-a"}', f'x{{{T},cf_space_guid!="space-a"}}'),
    ('x{cf_space_guid=~".*"}', f'x{{{T},cf_space_guid=~".*"}}'),
    ('x{cf_space_guid=~"space-.*"}', f'x{{{T},cf_space_guid=~"space-.*"}}'),
    ('x{cf_space_guid!~"space-a"}', f'x{{{T},cf_space_guid!~"space-a"}}'),
    ('x{cf_space_guid=""}', f'x{{{T},cf_space_guid=""}}'),
    ('x{cf_space_guid="space-a"}', f"x{{{T}}}"),
    ('x{cf_space_guid="space-a",cf_space_guid="space-a"}', f"x{{{T}}}"),
    ('{cf_space_guid="space-b"}', f'{{{T},cf_space_guid="space-b"}}'),
    ('{cf_space_guid="space-b" or cf_space_guid="space-c"}', f'{{{T},cf_space_guid="space-b" or {T},cf_space_guid="space-c"}}'),
    ('x{cf_space_guid="space-a\\"} or y{cf_space_guid=\\"space-b"}', f'x{{{T},cf_space_guid="space-a\\"}} or y{{cf_space_guid=\\"space-b"}}'),
    ('x{cf_organization_guid="org-b"}', f'x{{{T},cf_organization_guid="org-b"}}'),
    ('x{CF_SPACE_GUID="space-b"}', f'x{{{T},CF_SPACE_GUID="space-b"}}'),
    ('x{"cf_space_guid"="space-b"}', f'x{{{T},cf_space_guid="space-b"}}'),
    ('label_replace(x, "cf_space_guid", "space-b", "", "")', f'label_replace(x{{{T}}}, "cf_space_guid", "space-b", "", "")'),
    ('x + on(cf_space_guid) y{cf_space_guid="space-b"}', f'x{{{T}}} + on(cf_space_guid) y{{{T},cf_space_guid="space-b"}}'),
    ('sum without (cf_space_guid) (x)', f"sum without (cf_space_guid) (x{{{T}}})"),
    ('x{job="}"}', f'x{{{T},job="}}"}}'),
    ('x{job="\\"}"}', f'x{{{T},job="\\"}}"}}'),
    ('x{job=",cf_space_guid=\\"space-b"}', f'x{{{T},job=",cf_space_guid=\\"space-b"}}'),
]

# Refused or rejected: a 400 for the client, whatever the reason.
REFUSED = [
    "",
    "   ",
    "{}",
    '{a=""}',
    "x{",
    "x}",
    "sum(",
    "rate(x)",
    "unknown_function(x)",
    "x[5m:1m:1m]",
    "x offset 1h offset 1h",
    "x @ 1 @ 2",
    "x @ -100",
    "x @ - 1",
    "x[0s]",
    "x[1.5m]",
    "sum(x, y)",
    "x limit 5",
    "x{a=`raw\\string`}",
    "x\x00",
    'x{a="1" or}',
    "inf{a=\"b\"}",
    "1 +",
    "a + fill(0) b",
    "x{job=~\"(\"}",
]


@pytest.mark.parametrize(("query", "expected"), REWRITES + FOREIGN)
def test_rewrite(query: str, expected: str) -> None:
    out = enforce(query, TENANT)
    assert out == expected
    assert every_selector_enforced(out, TENANT)
    assert enforce(out, TENANT) == out  # idempotent


@pytest.mark.parametrize(("query", "expected"), REWRITES + FOREIGN)
def test_output_parses_to_the_same_tree_plus_matcher(query: str, expected: str) -> None:
    """The printed query means what was parsed: same selectors, same matchers (plus ours)."""
    before = selector_groups(query)
    after = selector_groups(enforce(query, TENANT))
    wanted = ("MatchOp.Equal", TENANT.label, TENANT.value)
    assert len(before) == len(after)
    for original, rewritten in zip(before, after):
        assert rewritten[0] == wanted
        assert [m for m in rewritten[1:]] == [m for m in original if m != wanted]


@pytest.mark.parametrize("query", REFUSED)
def test_refused(query: str) -> None:
    with pytest.raises(EnforcementError):
        enforce(query, TENANT)


def test_remembered_rewrites_are_the_same_and_per_tenant() -> None:
    """enforce_memo answers as enforce does, twice over, and never hands one tenant's
    rewrite to another: the matcher is part of what is remembered."""
    other = TenantMatcher("cf_space_guid", "space-b")
    for query, expected in REWRITES + FOREIGN:
        for _ in range(2):
            assert enforce_memo(query, TENANT) == expected
            assert enforce_memo(query, other) == enforce(query, other)
            if T in expected:  # a query with a selector: the other tenant's differs
                assert enforce_memo(query, other) != expected
    for query in REFUSED:
        for _ in range(2):  # a failure is not remembered as a success
            with pytest.raises(EnforcementError):
                enforce_memo(query, TENANT)
    long_query = "x + " * 100 + "x" + " " * 2000  # beyond MEMO_MAX_QUERY: enforced every time
    assert enforce_memo(long_query, TENANT) == enforce(long_query, TENANT)


def test_quote_survives_every_hostile_character() -> None:
    hostile = 'a"b\\c\nd\re\tf\x01g\x7fh}i{j,k=l"m é ☃ \u2028'
    parsed = pp.parse("x{job=" + quote(hostile) + "}")
    assert parsed.matchers.matchers[0].value == hostile


def test_render_without_tenant_round_trips() -> None:
    q = 'sum by (job) (rate(x{job="a\\"b"}[5m] offset 1m)) / on(job) group_left() y'
    once = render(pp.parse(q))
    assert render(pp.parse(once)) == once
    assert "cf_space_guid" not in once


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.001, "1ms"), (1, "1s"), (90, "1m30s"), (3600, "1h"), (86400 * 8, "1w1d"), (-300, "-5m")],
)
def test_duration(seconds: float, text: str) -> None:
    from datetime import timedelta

    assert duration(timedelta(seconds=seconds)) == text


def test_org_scope() -> None:
    org = TenantMatcher("cf_organization_guid", "org-1")
    out = enforce('x{cf_space_guid="s"} / y', org)
    assert out == 'x{cf_organization_guid="org-1",cf_space_guid="s"} / y{cf_organization_guid="org-1"}'


def test_tenant_value_with_quotes_is_escaped() -> None:
    odd = TenantMatcher("cf_space_guid", 'a"}or{b="')
    out = enforce("x", odd)
    assert selector_groups(out) == [[("MatchOp.Equal", "cf_space_guid", 'a"}or{b="')]]


def test_tenant_matcher_validates() -> None:
    with pytest.raises(ValueError):
        TenantMatcher("bad label", "v")
    with pytest.raises(ValueError):
        TenantMatcher("cf_space_guid", "")


# --- match[] ------------------------------------------------------------------------


def test_match_absent_means_the_tenant_only() -> None:
    assert enforce_selectors([], TENANT) == [f"{{{T}}}"]


def test_match_list_enforced() -> None:
    out = enforce_selectors(["up", '{job="x"}', '{cf_space_guid="space-b"}', '{a="1" or b="2"}'], TENANT)
    assert out == [
        f"up{{{T}}}",
        f'{{{T},job="x"}}',
        f'{{{T},cf_space_guid="space-b"}}',
        f'{{{T},a="1" or {T},b="2"}}',
    ]


@pytest.mark.parametrize(
    "selector", ["rate(x[5m])", "x[5m]", "x + y", "sum(x)", "x offset 5m", "x @ 10", "1", '"s"', "", "{}"]
)
def test_match_must_be_a_plain_selector(selector: str) -> None:
    with pytest.raises(EnforcementError):
        enforce_selectors([selector], TENANT)


# --- bounds before parsing ------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "(" * 100 + "x" + ")" * 100,
        "abs(" * 100 + "x" + ")" * 100,
        "+".join(["x"] * 300),
        " and ".join(["x"] * 300),
        "-" * 300 + "x",
        "x" * 20000,
    ],
)
def test_prescan_refuses_deep_or_long(query: str) -> None:
    with pytest.raises(EnforcementError):
        enforce(query, TENANT)


def test_comments_are_skipped_exactly() -> None:
    prescan("x # " + "(" * 100 + "+" * 300)
    assert enforce("x # (((\r + y # +\n", TENANT) == f"x{{{T}}} + y{{{T}}}"


def test_prescan_ignores_brackets_and_operators_inside_strings() -> None:
    query = 'x{job="' + "((((+-*/" * 100 + '", a=\'((((\', b=`))))`}'
    prescan(query, QueryLimits(max_length=100000))
    assert every_selector_enforced(enforce(query, TENANT, QueryLimits(max_length=100000)), TENANT)


@pytest.mark.parametrize(
    "query",
    [
        # promql-parser ends a comment at "\r": operators after it are real code.
        "x # comment\r" + "+x" * 300,
        # a "{" inside a comment must not hide the operators that follow from the count.
        "x # {\n" + "+x" * 300 + "\n}",
        # a string may not span a line: the parser and the pre-scan must agree on where it ends.
        'x # "\n' + "+x" * 300 + '\n"',
        "x # `\r" + "+x" * 300 + "`",
        # a quoted string holding a control character, with the other quote inside it
        # (found by tests/security): the lexer and a naive scan disagree on where it ends.
        "label_join(up, \"x\", '\t\"')" + " + up" * 300 + ' + label_join(up, "y", "z")',
        'label_join(up, "x", "\t\'")' + " + up" * 300 + " + label_join(up, 'y', 'z')",
        'label_join(up, "x", `\n"`)' + " + up" * 300 + ' + label_join(up, "y", "z")',
        # a comment holding a character some lexers end lines at
        "x # \x0b `\n" + "+x" * 300 + "\n`",
        "x # \u2028 `\n" + "+x" * 300 + "\n`",
        'x{a="',
        "x{a='\\",
    ],
)
def test_prescan_is_not_fooled_by_comments_or_strings(query: str) -> None:
    with pytest.raises(EnforcementError):
        prescan(query)


def test_many_flat_matchers_are_fine() -> None:
    query = "x{" + ",".join(f'l{i}="v"' for i in range(300)) + "}"
    assert selector_count(enforce(query, TENANT, QueryLimits(max_length=100000))) == 1


def test_limits_are_configurable() -> None:
    with pytest.raises(EnforcementError):
        enforce("a + b + c", TENANT, QueryLimits(max_operators=1))
    with pytest.raises(EnforcementError):
        enforce("((x))", TENANT, QueryLimits(max_depth=1))
    with pytest.raises(EnforcementError):
        enforce("x" * 65, TENANT, QueryLimits(max_length=64))


@pytest.mark.parametrize(
    "query", ["(" * 10000 + "x" + ")" * 10000, "x # comment\r" + "+x" * 10000]
)
def test_the_parser_really_crashes_on_what_the_prescan_refuses(query: str) -> None:
    """Why the prescan exists: promql-parser kills the process on deep nesting."""
    code = f"import promql_parser; promql_parser.parse({query!r})"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120, check=False)
    assert proc.returncode != 0
    with pytest.raises(EnforcementError):
        enforce(query, TENANT, QueryLimits(max_length=100000))


@pytest.mark.parametrize("query", ["rate(x[33d])", "max_over_time(x[40d:1h])", "rate(x[5m])[1y:]"])
def test_ranges_longer_than_the_limit_are_422(query: str) -> None:
    from gateway.enforce import LimitExceeded

    with pytest.raises(LimitExceeded):
        enforce(query, TENANT)
    assert enforce(query, TENANT, QueryLimits(max_range_seconds=10 * 365 * 86400))
