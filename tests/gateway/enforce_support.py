"""An independent check of enforcement, using promql-parser's own walk (not our printer)."""

from __future__ import annotations

from typing import Any

import promql_parser as pp

from gateway.enforce import TenantMatcher


def selector_groups(query: str) -> list[list[tuple[str, str, str]]]:
    """Every matcher group of every vector selector in ``query`` (``or`` alternatives apart)."""
    groups: list[list[tuple[str, str, str]]] = []

    def visit(node: Any) -> None:
        if type(node) is pp.VectorSelector:
            ms = node.matchers
            alternatives = ms.or_matchers if ms.or_matchers else [ms.matchers]
            for group in alternatives:
                groups.append([(str(m.op), m.name, m.value) for m in group])

    pp.walk(pp.parse(query), visit)
    return groups


def every_selector_enforced(query: str, tenant: TenantMatcher) -> bool:
    wanted = (str(pp.MatchOp.Equal), tenant.label, tenant.value)
    groups = selector_groups(query)
    return all(wanted in group for group in groups)


def selector_count(query: str) -> int:
    count = 0

    def visit(node: Any) -> None:
        nonlocal count
        if type(node) is pp.VectorSelector:
            count += 1

    pp.walk(pp.parse(query), visit)
    return count
