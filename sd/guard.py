"""Pure: the mass-deletion guard. Should a cycle's new targets replace the published ones?

An Aiven listing that wrongly comes back empty (or half empty) looks exactly like every
tenant deleting their services at once. A cycle that would drop more than
``max_drop_share`` of the published target groups, and more than ``min_drop`` of them,
is withheld: the last good targets stay. The drop is applied once it has been proposed
by ``confirm_cycles`` cycles in a row, or at once when an operator confirmed it
(``tenant-metrics sd confirm-drop``). Small and ordinary deletions apply at once.

Targets are compared by key (the Aiven service name of each group), so a drop is the
services that would disappear, whatever else is added in the same cycle.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class GuardSettings:
    max_drop_share: float = 0.5  # SD_MAX_TARGET_DROP: a larger share of the groups is suspect
    min_drop: int = 5  # SD_DROP_MIN_TARGETS: dropping this many or fewer is always ordinary
    confirm_cycles: int = 6  # SD_DROP_CONFIRM_CYCLES: cycles in a row that make a drop real

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_drop_share <= 1.0:
            raise ValueError("max_drop_share must be between 0 and 1")
        if self.min_drop < 0 or self.confirm_cycles < 1:
            raise ValueError("min_drop must be >= 0 and confirm_cycles >= 1")


@dataclass(frozen=True, slots=True)
class PendingDrop:
    """A large drop being withheld: ``cycles`` in a row have proposed one so far."""

    cycles: int
    dropped: int
    previous: int


class Verdict(StrEnum):
    PUBLISH = "publish"  # nothing suspicious: the new targets go out
    WITHHOLD = "withhold"  # a large drop, not confirmed yet: the last good targets stay
    CONFIRMED_BY_CYCLES = "cycles"  # a large drop seen confirm_cycles times in a row: applied
    CONFIRMED_BY_OPERATOR = "operator"  # a large drop an operator confirmed: applied


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    pending: PendingDrop | None  # the state for the next cycle
    dropped: int  # published groups the new targets would remove
    previous: int  # published groups before this cycle

    @property
    def publish(self) -> bool:
        return self.verdict is not Verdict.WITHHOLD

    @property
    def share(self) -> float:
        return self.dropped / self.previous if self.previous else 0.0


def is_large_drop(dropped: int, previous: int, settings: GuardSettings) -> bool:
    return dropped > settings.min_drop and dropped > settings.max_drop_share * previous


def decide(
    previous: Collection[str] | None,
    new: Collection[str],
    pending: PendingDrop | None,
    settings: GuardSettings,
    *,
    operator_confirmed: bool = False,
) -> Decision:
    """``previous`` is None when nothing was published yet (nothing to protect)."""
    if previous is None:
        return Decision(Verdict.PUBLISH, None, 0, 0)
    new_keys = new if isinstance(new, (set, frozenset)) else set(new)
    dropped = sum(1 for key in previous if key not in new_keys)
    total = len(previous)
    if not is_large_drop(dropped, total, settings):
        return Decision(Verdict.PUBLISH, None, dropped, total)
    cycles = (pending.cycles if pending else 0) + 1
    if operator_confirmed:
        return Decision(Verdict.CONFIRMED_BY_OPERATOR, None, dropped, total)
    if cycles >= settings.confirm_cycles:
        return Decision(Verdict.CONFIRMED_BY_CYCLES, None, dropped, total)
    return Decision(Verdict.WITHHOLD, PendingDrop(cycles, dropped, total), dropped, total)
