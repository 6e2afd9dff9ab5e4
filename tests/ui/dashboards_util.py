"""Reading Grafana dashboards as a tenant's Grafana would: every PromQL expression, with variables filled in."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "tenant_metrics" / "dashboards"
LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?P<selector>.+?)\s*,\s*(?P<label>[a-zA-Z_]\w*)\s*\)\s*$", re.S)
QUERY_RESULT = re.compile(r"^\s*query_result\(\s*(?P<expr>.+)\s*\)\s*$", re.S)
# Grafana's built-in interval variables, set to what a short test range needs.
BUILTINS = {"__rate_interval": "15s", "__interval": "5s", "__range": "5m", "__range_s": "300"}


@dataclass(frozen=True, slots=True)
class Expression:
    where: str  # "panel 7 'Documents' A" or "variable org"
    expr: str  # PromQL (for a label_values() variable: its series selector)
    label: str | None = None  # for a label_values() variable: the label whose values it lists


def dashboard_files() -> list[Path]:
    files = sorted(DASHBOARD_DIR.glob("*.json"))
    assert files, f"no dashboards in {DASHBOARD_DIR}"
    return files


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])  # collapsed rows keep theirs inside


def expressions(dashboard: Mapping[str, Any]) -> list[Expression]:
    """Every PromQL expression in panels (targets) and in the templating variables."""
    out = []
    for panel in _panels(dashboard.get("panels") or []):
        for target in panel.get("targets") or []:
            if target.get("expr"):
                out.append(Expression(f"panel {panel['id']} {panel.get('title')!r} {target.get('refId')}",
                                      target["expr"]))
    for var in (dashboard.get("templating") or {}).get("list") or []:
        if var.get("type") != "query":
            continue
        query = var.get("query")
        text = query.get("query") if isinstance(query, dict) else query
        m = LABEL_VALUES.match(text or "")
        if m:
            out.append(Expression(f"variable {var['name']}", m.group("selector"), m.group("label")))
            continue
        m = QUERY_RESULT.match(text or "")
        out.append(Expression(f"variable {var['name']}", m.group("expr") if m else (text or "")))
    return out


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Fill ``$name``, ``${name}`` and ``[[name]]`` as Grafana does (regex values are used as given)."""
    merged = {**BUILTINS, **values}

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in merged:
            raise KeyError(f"no value for dashboard variable ${name} in {expr!r}")
        return merged[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", repl, expr)
