"""Table tests of params.py's rebuilding: validated values, printed the one way the gateway sends them."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from gateway.params import (
    LimitExceeded,
    Params,
    instant_time,
    limit,
    metric_name,
    query_timeout,
    range_window,
    time_range,
)
from tenant_metrics.core.errors import InvalidInput


def _params(*pairs: tuple[str, str]) -> Params:
    return Params(MultiDict(pairs))


@pytest.mark.parametrize(
    ("pairs", "rebuilt"),
    [
        ((), []),
        ((("time", "1700000000"),), [("time", "1700000000.000")]),
        ((("time", "2023-11-14T22:13:20Z"),), [("time", "1700000000.000")]),
        ((("time", ""),), []),
    ],
)
def test_instant_time(pairs: tuple[tuple[str, str], ...], rebuilt: list[tuple[str, str]]) -> None:
    assert instant_time(_params(*pairs)) == rebuilt


@pytest.mark.parametrize(
    ("pairs", "rebuilt"),
    [
        ((), []),
        ((("start", "10"),), [("start", "10.000")]),
        ((("end", "10.5"),), [("end", "10.500")]),
        ((("start", "10"), ("end", "10")), [("start", "10.000"), ("end", "10.000")]),
        ((("end", "20"), ("start", "10")), [("start", "10.000"), ("end", "20.000")]),  # always start first
    ],
)
def test_time_range(pairs: tuple[tuple[str, str], ...], rebuilt: list[tuple[str, str]]) -> None:
    assert time_range(_params(*pairs)) == rebuilt


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ((("start", "20"), ("end", "10")), "end timestamp must not be before start time"),
        ((("start", "x"),), 'invalid parameter "start"'),
        ((("start", "1"), ("start", "2")), "given more than once"),
        ((("end", "nan"),), 'invalid parameter "end"'),
    ],
)
def test_time_range_refuses(pairs: tuple[tuple[str, str], ...], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        time_range(_params(*pairs))


def test_time_range_required() -> None:
    with pytest.raises(InvalidInput, match="missing parameter 'start'"):
        time_range(_params(("end", "1")), required=True)


@pytest.mark.parametrize(
    ("pairs", "rebuilt"),
    [
        ((("start", "0"), ("end", "3600"), ("step", "60")), [("start", "0.000"), ("end", "3600.000"), ("step", "60s")]),
        ((("start", "0"), ("end", "60"), ("step", "1m")), [("start", "0.000"), ("end", "60.000"), ("step", "60s")]),
        ((("start", "0"), ("end", "1"), ("step", "0.25")), [("start", "0.000"), ("end", "1.000"), ("step", "0.25")]),
    ],
)
def test_range_window(pairs: tuple[tuple[str, str], ...], rebuilt: list[tuple[str, str]]) -> None:
    assert range_window(_params(*pairs), max_range_seconds=86400, max_points=11000) == rebuilt


@pytest.mark.parametrize(
    ("pairs", "error", "message"),
    [
        ((("end", "1"), ("step", "1")), InvalidInput, "missing parameter 'start'"),
        ((("start", "0"), ("end", "1")), InvalidInput, "missing parameter 'step'"),
        ((("start", "10"), ("end", "1"), ("step", "1")), InvalidInput, "must not be before start"),
        ((("start", "0"), ("end", "1"), ("step", "0")), InvalidInput, "zero or negative duration"),
        ((("start", "0"), ("end", "86401"), ("step", "60")), LimitExceeded, r"longer than this gateway allows \(86400s\)"),
        ((("start", "0"), ("end", "11000"), ("step", "1")), InvalidInput, "exceeded maximum resolution of 11000 points"),
    ],
)
def test_range_window_refuses(pairs: tuple[tuple[str, str], ...], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        range_window(_params(*pairs), max_range_seconds=86400, max_points=11000)


@pytest.mark.parametrize(
    ("given", "sent"),
    [(None, "30s"), ("10s", "10s"), ("5", "5s"), ("1m", "30s"), ("0.5", "0.5"), ("30s", "30s")],
)
def test_query_timeout_is_never_more_than_ours(given: str | None, sent: str) -> None:
    pairs = (("timeout", given),) if given is not None else ()
    assert query_timeout(_params(*pairs), 30.0) == sent


def test_limit_and_metric_name() -> None:
    assert limit(_params()) == []
    assert limit(_params(("limit", "007"))) == [("limit", "7")]
    with pytest.raises(InvalidInput, match='"limit"'):
        limit(_params(("limit", "-1")))
    assert metric_name(_params()) is None
    assert metric_name(_params(("metric", "a:b_total"))) == "a:b_total"
    for bad in ("a{b}", "1x", "a b", 'a"'):
        with pytest.raises(InvalidInput, match='invalid parameter "metric"'):
            metric_name(_params(("metric", bad)))
