"""Platform alert and recording rules for tenants' Aiven search services (YAML files here).

The files are the source of truth and ship as package data, so Prometheus can load them
where the package is installed (``rules_glob()``, what ``sd prometheus-config`` references)
or from the combined stream ``render_rules()`` prints (``sd prometheus-rules``).
``render_rules(for_scale=...)`` shortens the ``for`` durations for end-to-end tests while
keeping every expression as shipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tenant_metrics.core.errors import ConfigError

RULES_DIR = Path(__file__).resolve().parent
RULE_FILES: tuple[str, ...] = ("aiven-search-alerts.yml", "aiven-search-capacity.yml")

_UNITS_MS = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
    "y": 31_536_000_000,
}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")


@dataclass(frozen=True, slots=True)
class RuleFile:
    """One shipped rule file: its name and the path Prometheus reads."""

    name: str
    path: Path

    def load(self) -> dict[str, Any]:
        loaded = yaml.safe_load(self.path.read_text())
        if not isinstance(loaded, dict) or not isinstance(loaded.get("groups"), list):
            raise ConfigError(f"{self.path}: not a Prometheus rule file (no 'groups' list)")
        return loaded


def rule_files() -> list[RuleFile]:
    return [RuleFile(name, RULES_DIR / name) for name in RULE_FILES]


def rules_glob() -> str:
    """The pattern for ``rule_files:`` that matches every shipped file where it is installed."""
    return str(RULES_DIR / "*.yml")


def parse_duration(text: str) -> int:
    """A Prometheus duration ("1h30m", "5m", "500ms") in milliseconds."""
    parts = _DURATION.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ConfigError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNITS_MS[u] for n, u in parts)


def format_duration(ms: int) -> str:
    """Milliseconds as a Prometheus duration: whole seconds as "Ns", otherwise "Nms"."""
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def groups(for_scale: float = 1.0, interval: str | None = None) -> list[dict[str, Any]]:
    """Every shipped group; ``for`` scaled by ``for_scale`` (at least 1ms where it was set)
    and each group's ``interval`` replaced by ``interval`` when given."""
    if for_scale <= 0:
        raise ConfigError("for_scale must be positive")
    out: list[dict[str, Any]] = []
    for rule_file in rule_files():
        for group in rule_file.load()["groups"]:
            group = dict(group)
            if interval is not None:
                group["interval"] = format_duration(parse_duration(interval))
            rules = []
            for rule in group["rules"]:
                rule = dict(rule)
                if "for" in rule and for_scale != 1.0:
                    rule["for"] = format_duration(max(1, round(parse_duration(rule["for"]) * for_scale)))
                rules.append(rule)
            group["rules"] = rules
            out.append(group)
    return out


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (expressions) as ``|`` blocks, so the printed rules stay readable."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def render_rules(for_scale: float = 1.0, interval: str | None = None) -> str:
    """All shipped groups as one rule file (YAML); see ``groups`` for the two overrides."""
    return yaml.dump(
        {"groups": groups(for_scale, interval)},
        Dumper=_BlockDumper,
        sort_keys=False,
        default_flow_style=False,
        width=200,
    )
