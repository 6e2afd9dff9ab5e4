"""The mass-deletion guard as a pure function, table by table; and its settings."""

from __future__ import annotations

import pytest

from sd import writer
from sd.config import SdSettings
from sd.guard import GuardSettings, PendingDrop, Verdict, decide
from sd.targets import TargetGroup, group_key
from tenant_metrics.core.errors import ConfigError


def keys(n: int, start: int = 0) -> frozenset[str]:
    return frozenset(f"svc-{i:03d}" for i in range(start, start + n))


DEFAULT = GuardSettings()  # 50%, more than 5, 6 cycles
W = Verdict.WITHHOLD
P = Verdict.PUBLISH


@pytest.mark.parametrize(
    ("name", "previous", "new", "pending", "verdict", "dropped", "pending_after"),
    [
        ("first cycle: nothing published yet", None, keys(0), None, P, 0, None),
        ("no change", keys(20), keys(20), None, P, 0, None),
        ("growth", keys(20), keys(30), None, P, 0, None),
        ("one of 20 deleted", keys(20), keys(19), None, P, 1, None),
        ("exactly half of 20 deleted", keys(20), keys(10), None, P, 10, None),
        ("11 of 20 deleted", keys(20), keys(9), None, W, 11, PendingDrop(1, 11, 20)),
        ("empty list, 20 before", keys(20), keys(0), None, W, 20, PendingDrop(1, 20, 20)),
        ("1 -> 0 is an ordinary deletion", keys(1), keys(0), None, P, 1, None),
        ("5 -> 0: not more than min_drop", keys(5), keys(0), None, P, 5, None),
        ("6 -> 0: more than min_drop", keys(6), keys(0), None, W, 6, PendingDrop(1, 6, 6)),
        ("6 of 100 deleted: a small share", keys(100), keys(94), None, P, 6, None),
        (
            "replaced wholesale: 20 gone, 20 new",
            keys(20),
            keys(20, start=100),
            None,
            W,
            20,
            PendingDrop(1, 20, 20),
        ),
        (
            "second cycle of the drop",
            keys(20),
            keys(0),
            PendingDrop(1, 20, 20),
            W,
            20,
            PendingDrop(2, 20, 20),
        ),
        ("sixth cycle: confirmed", keys(20), keys(0), PendingDrop(5, 20, 20), Verdict.CONFIRMED_BY_CYCLES, 20, None),
        ("listing back: pending forgotten", keys(20), keys(20), PendingDrop(4, 20, 20), P, 0, None),
        ("a small drop ends a pending one", keys(20), keys(18), PendingDrop(4, 20, 20), P, 2, None),
    ],
)
def test_decide(
    name: str,
    previous: frozenset[str] | None,
    new: frozenset[str],
    pending: PendingDrop | None,
    verdict: Verdict,
    dropped: int,
    pending_after: PendingDrop | None,
) -> None:
    decision = decide(previous, new, pending, DEFAULT)
    assert (decision.verdict, decision.dropped, decision.pending) == (
        verdict,
        dropped,
        pending_after,
    ), name
    assert decision.publish is (verdict is not W)


def test_operator_confirmation_applies_a_large_drop_at_once() -> None:
    decision = decide(keys(20), keys(0), None, DEFAULT, operator_confirmed=True)
    assert decision.verdict is Verdict.CONFIRMED_BY_OPERATOR and decision.publish
    assert decision.pending is None and decision.share == 1.0


def test_operator_confirmation_changes_nothing_for_an_ordinary_cycle() -> None:
    assert decide(keys(20), keys(19), None, DEFAULT, operator_confirmed=True).verdict is P


@pytest.mark.parametrize(
    ("settings", "previous", "new", "verdict"),
    [
        (GuardSettings(max_drop_share=1.0), keys(20), keys(0), P),  # share 1.0 turns it off
        (GuardSettings(max_drop_share=0.0, min_drop=0), keys(20), keys(19), W),  # any drop
        (GuardSettings(min_drop=0), keys(1), keys(0), W),  # even one of one
        (GuardSettings(confirm_cycles=1), keys(20), keys(0), Verdict.CONFIRMED_BY_CYCLES),
        (GuardSettings(max_drop_share=0.25), keys(20), keys(14), W),  # 6 of 20 = 30%
    ],
)
def test_settings_move_the_line(
    settings: GuardSettings, previous: frozenset[str], new: frozenset[str], verdict: Verdict
) -> None:
    assert decide(previous, new, None, settings).verdict is verdict


def test_a_drop_is_applied_after_exactly_confirm_cycles_cycles() -> None:
    settings = GuardSettings(confirm_cycles=3)
    pending = None
    verdicts = []
    for _ in range(3):
        decision = decide(keys(20), keys(0), pending, settings)
        verdicts.append(decision.verdict)
        pending = decision.pending
    assert verdicts == [W, W, Verdict.CONFIRMED_BY_CYCLES]


@pytest.mark.parametrize(
    "kwargs", [{"max_drop_share": 1.5}, {"max_drop_share": -0.1}, {"min_drop": -1}, {"confirm_cycles": 0}]
)
def test_guard_settings_reject_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        GuardSettings(**kwargs)  # type: ignore[arg-type]


BASE_ENV = {
    "AIVEN_API_TOKEN": "t",
    "AIVEN_PROJECT": "p",
    "AIVEN_PROMETHEUS_ENDPOINT_ID": "e",
    "AIVEN_SERVICE_PREFIX": "prod-es",
    "DATABASE_URL": "sqlite:///x.sqlite3",
}


def test_settings_defaults_and_overrides() -> None:
    s = SdSettings.from_env(BASE_ENV)
    assert (s.max_target_drop, s.drop_min_targets, s.drop_confirm_cycles) == (0.5, 5, 6)
    s = SdSettings.from_env(
        {
            **BASE_ENV,
            "SD_MAX_TARGET_DROP": "0.3",
            "SD_DROP_MIN_TARGETS": "0",
            "SD_DROP_CONFIRM_CYCLES": "2",
        }
    )
    assert (s.max_target_drop, s.drop_min_targets, s.drop_confirm_cycles) == (0.3, 0, 2)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SD_MAX_TARGET_DROP", "1.5"),
        ("SD_MAX_TARGET_DROP", "-1"),
        ("SD_MAX_TARGET_DROP", "half"),
        ("SD_DROP_CONFIRM_CYCLES", "0"),
        ("SD_DROP_MIN_TARGETS", "-1"),
    ],
)
def test_bad_guard_settings_are_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        SdSettings.from_env({**BASE_ENV, name: value})


def test_rendered_keys_agree_with_group_key() -> None:
    groups = [
        TargetGroup(("10.0.0.1:9273",), (("aiven_service_name", "prod-es-a"), ("x", "y"))),
        TargetGroup(("10.0.0.2:9273", "10.0.0.3:9273"), (("x", "y"),)),  # no service label
    ]
    assert writer.rendered_keys(writer.render(groups)) == {group_key(g) for g in groups}
    assert writer.rendered_keys(writer.render([])) == frozenset()
    assert writer.rendered_keys(b"[{not json") is None
    assert writer.rendered_keys(b'{"a": 1}') is None
