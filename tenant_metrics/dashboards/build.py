"""Write the tenant dashboards (Grafana JSON) for the Aiven service types we integrate.

``python -m tenant_metrics.dashboards.build`` rewrites ``dashboards/*.json``; a test checks the files
match this generator, that every expression parses, and that each returns data for a
tenant through the gateway. One generator keeps the OpenSearch and the legacy
Elasticsearch dashboards identical apart from the metric family prefix that Aiven's
Telegraf-based Prometheus integration uses for each type (``opensearch_*`` /
``elasticsearch_*``; the host metrics ``cpu_*``, ``mem_*``, ``disk_*``, ``system_*``,
``net_*`` are shared).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARD_DIR = Path(__file__).resolve().parent
# Every panel and variable reads the data source chosen in the `datasource` variable, so
# the same file works imported in the UI, provisioned from disk, posted to the HTTP API
# or managed by Terraform (an `__inputs` placeholder only works for a UI import).
DS = {"type": "prometheus", "uid": "${datasource}"}
# schemaVersion 39 is what Grafana 10.3 writes; older Grafanas migrate it on load at best.
MIN_GRAFANA = "10.3.0"
SCHEMA_VERSION = 39


@dataclass(frozen=True, slots=True)
class Kind:
    """One Aiven service type: its ``aiven_service_type`` value and metric prefix."""

    service_type: str
    title: str
    uid: str

    @property
    def family(self) -> str:
        return self.service_type


KINDS = (
    Kind("opensearch", "OpenSearch", "tm-aiven-opensearch"),
    Kind("elasticsearch", "Elasticsearch, legacy", "tm-aiven-elasticsearch"),
)


def selector(kind: Kind, extra: str = "") -> str:
    """The label matchers every panel shares: the chosen org, space and instances."""
    parts = [
        f'aiven_service_type="{kind.service_type}"',
        'cf_organization_name=~"$org"',
        'cf_space_name=~"$space"',
        'cf_service_instance_name=~"$instance"',
    ]
    if extra:
        parts.append(extra)
    return "{" + ", ".join(parts) + "}"


def _target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, "range": True}


def _panel(pid: int, title: str, kind: str, grid: tuple[int, int, int, int], targets: list[dict[str, Any]],
           unit: str = "short", description: str = "", **field: Any) -> dict[str, Any]:
    x, y, w, h = grid
    defaults: dict[str, Any] = {"unit": unit}
    defaults.update(field)
    panel: dict[str, Any] = {
        "id": pid,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {},
    }
    if kind == "timeseries":
        panel["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                            "tooltip": {"mode": "multi", "sort": "desc"}}
        defaults.setdefault("custom", {"lineWidth": 1, "fillOpacity": 10, "showPoints": "never"})
    if kind == "stat":
        panel["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                            "colorMode": "background", "graphMode": "none", "textMode": "value_and_name"}
    return panel


def _row(pid: int, title: str, y: int) -> dict[str, Any]:
    return {"id": pid, "type": "row", "title": title, "collapsed": False,
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []}


HEALTH_MAPPINGS = [
    {"type": "value", "options": {
        "1": {"text": "green", "color": "green", "index": 0},
        "2": {"text": "yellow", "color": "yellow", "index": 1},
        "3": {"text": "red", "color": "red", "index": 2},
    }},
]


# The platform's recording rules (tenant_metrics/rules/aiven-search-capacity.yml): one series
# per service, cheap to read over any range.
DISK_USED = "aiven_service:disk_used_percent:max"
DAYS_TO_FULL = "aiven_service:disk_days_until_full:min"
HEAP_USED = "aiven_service:jvm_heap_used_percent:max"
RECORDED_NAMES = (DISK_USED, DAYS_TO_FULL, HEAP_USED)
# Rows above the metric rows: alerts, then capacity; the metric rows start below them.
TOP_ROWS_HEIGHT = 17


def _alert_list(pid: int, kind: Kind, grid: tuple[int, int, int, int]) -> dict[str, Any]:
    """Grafana's alert list (unified alerting) over the data source's own rules.

    The gateway's ``/api/v1/rules`` shows the tenant only its own alerts; the label filter
    narrows them to this dashboard's service type and the chosen instances.
    """
    x, y, w, h = grid
    return {
        "id": pid,
        "type": "alertlist",
        "title": "Firing and pending alerts",
        "description": "The platform's alert rules for your services (severity, summary and since when). "
                       "Needs the data source's alerting option on (Alerting → Manage alerts via Alerting UI).",
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "options": {
            "viewMode": "list",
            "groupMode": "custom",
            "groupBy": ["cf_service_instance_name"],
            "maxItems": 50,
            "sortOrder": 3,  # importance: firing before pending
            "dashboardAlerts": False,
            "alertName": "",
            "showInstances": True,
            "folder": None,
            "datasource": "${datasource}",
            "alertInstanceLabelFilter": f'{{aiven_service_type="{kind.service_type}", '
                                        'cf_service_instance_name=~"${instance:regex}"}',
            "stateFilter": {"firing": True, "pending": True, "noData": False, "normal": False,
                            "error": True},
        },
    }


def _capacity_panels(kind: Kind, first_id: int, y: int) -> list[dict[str, Any]]:
    s = selector(kind)
    by_inst = "cf_service_instance_name"
    inst = "{{cf_service_instance_name}}"

    def steps(*pairs: tuple[str, float | None]) -> dict[str, Any]:
        return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in pairs]}

    return [
        _panel(first_id, "Disk used (fullest node)", "stat", (0, y, 8, 6),
               [_target(f"max by ({by_inst}) ({DISK_USED}{s})", inst, "A")],
               unit="percent", min=0, max=100,
               description="The fullest filesystem of any node. Aiven's search services stop "
                           "allocating shards at 85% and stop writes near 95%.",
               thresholds=steps(("green", None), ("orange", 85), ("red", 90))),
        _panel(first_id + 1, "Days until a disk is full", "stat", (8, y, 8, 6),
               [_target(f"min by ({by_inst}) ({DAYS_TO_FULL}{s})", inst, "A")],
               unit="d", decimals=1, noValue="not filling",
               description="At the rate of the last 6 hours. No value: no disk is filling.",
               thresholds=steps(("red", None), ("orange", 4), ("green", 14))),
        _panel(first_id + 2, "JVM heap used (highest node)", "stat", (16, y, 8, 6),
               [_target(f"max by ({by_inst}) ({HEAP_USED}{s})", inst, "A")],
               unit="percent", min=0, max=100,
               description="Sustained values above 75% mean frequent garbage collection; above 85% alerts.",
               thresholds=steps(("green", None), ("orange", 75), ("red", 85))),
    ]


def _top_rows(kind: Kind) -> list[dict[str, Any]]:
    return [
        _row(24, "Alerts", 0),
        _alert_list(25, kind, (0, 1, 24, 9)),
        _row(26, "Capacity", 10),
        *_capacity_panels(kind, 27, 11),
    ]


def panels(kind: Kind) -> list[dict[str, Any]]:
    """The alerts and capacity rows, then the metric rows below them."""
    out = _top_rows(kind)
    for panel in _metric_panels(kind):
        panel["gridPos"]["y"] += TOP_ROWS_HEIGHT
        out.append(panel)
    return out


def _metric_panels(kind: Kind) -> list[dict[str, Any]]:
    f = kind.family
    s = selector(kind)
    by_inst = "cf_service_instance_name"
    by_node = "cf_service_instance_name, host"
    inst = "{{cf_service_instance_name}}"
    node = "{{cf_service_instance_name}} {{host}}"
    rate = "[$__rate_interval]"
    cpu_total = selector(kind, 'cpu="cpu-total"')
    out: list[dict[str, Any]] = [
        _row(1, "Cluster", 0),
        _panel(2, "Cluster health", "stat", (0, 1, 6, 5),
               [_target(f"max by ({by_inst}) ({f}_cluster_health_status_code{s})", inst, "A")],
               description="Worst cluster health reported by any node: green, yellow (replicas unassigned) or red (primaries unassigned).",
               mappings=HEALTH_MAPPINGS,
               thresholds={"mode": "absolute", "steps": [{"color": "green", "value": None},
                                                         {"color": "yellow", "value": 2},
                                                         {"color": "red", "value": 3}]}),
        _panel(3, "Nodes in cluster", "stat", (6, 1, 6, 5),
               [_target(f"max by ({by_inst}) ({f}_cluster_health_number_of_nodes{s})", inst, "A")]),
        _panel(4, "Scrape targets up", "stat", (12, 1, 6, 5),
               [_target(f"sum by ({by_inst}) (up{s})", inst, "A")],
               description="Nodes Prometheus scraped successfully at the last attempt. 0 means no metrics are arriving."),
        _panel(5, "Unassigned shards", "stat", (18, 1, 6, 5),
               [_target(f"max by ({by_inst}) ({f}_cluster_health_unassigned_shards{s})", inst, "A")],
               thresholds={"mode": "absolute", "steps": [{"color": "green", "value": None},
                                                         {"color": "orange", "value": 1}]}),
        _panel(6, "Active shards", "timeseries", (0, 6, 12, 8),
               [_target(f"max by ({by_inst}) ({f}_cluster_health_active_shards{s})", inst + " active", "A"),
                _target(f"max by ({by_inst}) ({f}_cluster_health_unassigned_shards{s})", inst + " unassigned", "B")]),
        _panel(7, "Documents", "timeseries", (12, 6, 12, 8),
               [_target(f"max by ({by_inst}) ({f}_clusterstats_indices_docs_count{s})", inst, "A")]),
        _panel(8, "Index store size", "timeseries", (0, 14, 12, 8),
               [_target(f"max by ({by_inst}) ({f}_clusterstats_indices_store_size_in_bytes{s})", inst, "A")],
               unit="bytes", description="Total size of all indices, replicas included."),
        _panel(9, "Indices", "timeseries", (12, 14, 12, 8),
               [_target(f"max by ({by_inst}) ({f}_clusterstats_indices_count{s})", inst, "A")]),
        _row(10, "Traffic", 22),
        _panel(11, "Search queries per second", "timeseries", (0, 23, 12, 8),
               [_target(f"sum by ({by_inst}) (rate({f}_indices_search_query_total{s}{rate}))", inst, "A")],
               unit="reqps"),
        _panel(12, "Documents indexed per second", "timeseries", (12, 23, 12, 8),
               [_target(f"sum by ({by_inst}) (rate({f}_indices_indexing_index_total{s}{rate}))", inst, "A")],
               unit="ops"),
        _row(13, "JVM and process (per node)", 31),
        _panel(14, "JVM heap used", "timeseries", (0, 32, 8, 8),
               [_target(f"max by ({by_node}) ({f}_jvm_mem_heap_used_percent{s})", node, "A")],
               unit="percent", min=0, max=100,
               description="Sustained values above 75% mean frequent garbage collection; consider a larger plan."),
        _panel(15, "Young GC collections per second", "timeseries", (8, 32, 8, 8),
               [_target(f"sum by ({by_node}) (rate({f}_jvm_gc_collectors_young_collection_count{s}{rate}))", node, "A")],
               unit="ops"),
        _panel(16, "Open file descriptors", "timeseries", (16, 32, 8, 8),
               [_target(f"max by ({by_node}) ({f}_process_open_file_descriptors{s})", node, "A")]),
        _row(17, "Host (per node)", 40),
        _panel(18, "CPU busy", "timeseries", (0, 41, 8, 8),
               [_target(f"100 - avg by ({by_node}) (cpu_usage_idle{cpu_total})", node, "A")],
               unit="percent", min=0, max=100),
        _panel(19, "Memory available", "timeseries", (8, 41, 8, 8),
               [_target(f"min by ({by_node}) (mem_available_percent{s})", node, "A")],
               unit="percent", min=0, max=100),
        _panel(20, "Disk used", "timeseries", (16, 41, 8, 8),
               [_target(f"max by ({by_node}) (disk_used_percent{s})", node, "A")],
               unit="percent", min=0, max=100,
               description="Aiven stops writes when a disk gets close to full: plan a larger disk or plan well before 85%."),
        _panel(21, "Load average (1 min)", "timeseries", (0, 49, 8, 8),
               [_target(f"max by ({by_node}) (system_load1{s})", node, "A")]),
        _panel(22, "Network", "timeseries", (8, 49, 8, 8),
               [_target(f"sum by ({by_node}) (rate(net_bytes_recv{s}{rate}))", node + " in", "A"),
                _target(f"sum by ({by_node}) (rate(net_bytes_sent{s}{rate}))", node + " out", "B")],
               unit="Bps"),
        _panel(23, "Disk operations per second", "timeseries", (16, 49, 8, 8),
               [_target(f"sum by ({by_node}) (rate(diskio_reads{s}{rate}))", node + " reads", "A"),
                _target(f"sum by ({by_node}) (rate(diskio_writes{s}{rate}))", node + " writes", "B")],
               unit="iops"),
    ]
    return out


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-variable"},
        "refresh": 2,  # on time range change: new services appear without reloading
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "sort": 1,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
        "regex": "",
    }


def _datasource_variable() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "regex": "",
        "current": {},
        "options": [],
        "refresh": 1,
        "hide": 0,
        "includeAll": False,
        "multi": False,
    }


def templating(kind: Kind) -> list[dict[str, Any]]:
    t = f'aiven_service_type="{kind.service_type}"'
    return [
        _datasource_variable(),
        _variable("org", "Organisation", f"label_values(up{{{t}}}, cf_organization_name)"),
        _variable("space", "Space", f'label_values(up{{{t}, cf_organization_name=~"$org"}}, cf_space_name)'),
        _variable("instance", "Service instance",
                  f'label_values(up{{{t}, cf_organization_name=~"$org", cf_space_name=~"$space"}}, '
                  "cf_service_instance_name)"),
    ]


def dashboard(kind: Kind) -> dict[str, Any]:
    return {
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": MIN_GRAFANA},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            {"type": "panel", "id": "alertlist", "name": "Alert list", "version": ""},
            {"type": "panel", "id": "stat", "name": "Stat", "version": ""},
            {"type": "panel", "id": "timeseries", "name": "Time series", "version": ""},
        ],
        "uid": kind.uid,
        "title": f"Aiven {kind.title} (tenant metrics)",
        "description": f"Alerts, capacity, health, traffic, JVM and host metrics of your Aiven {kind.title} services, "
                       "as scraped by the platform's Prometheus and served by the tenant-metrics gateway.",
        "tags": ["tenant-metrics", "aiven", kind.service_type],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "version": 1,
        "links": [],
        "annotations": {"list": []},
        "templating": {"list": templating(kind)},
        "panels": panels(kind),
    }


def render(kind: Kind) -> str:
    return json.dumps(dashboard(kind), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def path_for(kind: Kind) -> Path:
    return DASHBOARD_DIR / f"aiven-{kind.service_type}.json"


def main(argv: list[str] | None = None) -> int:
    """Write every dashboard; with ``--check``, only report files that differ (exit 1)."""
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    stale = []
    for kind in KINDS:
        path, text = path_for(kind), render(kind)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    for name in stale:
        print(f"{name} is out of date: run python -m tenant_metrics.dashboards.build", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
