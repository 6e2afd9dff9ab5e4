"""Pure: the Alertmanager side of the platform alerts, as YAML.

Two pieces: the ``alerting:`` section Prometheus needs to send to Alertmanager
(``alerting_section``, from ``--alertmanager-url``), and an example Alertmanager routing
config (``routing_config``) that groups the shipped tenant alerts per organization and
service, sends them to the platform's support queue with the organization's name in the
notification, and inhibits the alerts a worse one makes redundant. Tenants do not register
receivers of their own (docs/decisions/0006-platform-routed-alerts.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yaml

from tenant_metrics.core.errors import ConfigError
from tenant_metrics.core.labels import CF_ORGANIZATION_GUID, CF_SERVICE_INSTANCE_GUID

GROUP_BY: tuple[str, ...] = ("alertname", CF_ORGANIZATION_GUID, CF_SERVICE_INSTANCE_GUID)
SUPPORT_RECEIVER = "platform-support-tenant-alerts"
PLATFORM_RECEIVER = "platform-operators"

# (source alert, alerts it makes redundant): only for the same service.
INHIBITIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AivenSearchClusterRed", ("AivenSearchClusterYellow",)),
    ("AivenSearchDiskFloodStage", ("AivenSearchDiskHighWatermark", "AivenSearchDiskLowWatermark")),
    ("AivenSearchMetricsUnavailable", ("AivenSearchNodeNotScraped", "AivenSearchNodeOutOfCluster")),
)

# The organization's name first, so a support agent sees whose service it is at a glance.
# Every alert in a group is one service's, so CommonLabels carries the owner labels.
_SUBJECT = (
    "[{{ .Status | toUpper }}] {{ .CommonLabels.cf_organization_name }} / "
    "{{ .CommonLabels.cf_space_name }} / {{ .CommonLabels.cf_service_instance_name }}: "
    "{{ .CommonLabels.alertname }}"
)


@dataclass(frozen=True, slots=True)
class Receiver:
    """Where a route's notifications go: a webhook URL, or an email address (``mailto:``)."""

    kind: str  # "webhook" or "email"
    target: str

    @classmethod
    def parse(cls, option: str, spec: str) -> Receiver:
        if spec.startswith("mailto:"):
            address = spec.removeprefix("mailto:")
            if "@" not in address or any(c in address for c in " ,;<>"):
                raise ConfigError(f"{option}: not one email address: {spec!r}")
            return cls("email", address)
        parts = urlsplit(spec)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"{option} must be an http(s) webhook URL or mailto:ADDRESS, got {spec!r}"
            )
        if parts.username or parts.password:
            raise ConfigError(f"{option} must not carry credentials (the config is printed)")
        return cls("webhook", spec)


@dataclass(frozen=True, slots=True)
class Smtp:
    smarthost: str
    sender: str


def alertmanager_targets(urls: Sequence[str]) -> list[dict[str, Any]]:
    """``--alertmanager-url`` values as ``alerting.alertmanagers`` entries: one entry per
    scheme and path prefix, its hosts as static targets."""
    entries: dict[tuple[str, str], list[str]] = {}
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--alertmanager-url must be an http(s) URL with a host, got {url!r}")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ConfigError(
                f"--alertmanager-url must be scheme://host[:port][/prefix] only, got {url!r}"
            )
        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"--alertmanager-url: bad port in {url!r}") from exc
        host = parts.netloc if port else f"{parts.netloc}:{443 if parts.scheme == 'https' else 80}"
        entries.setdefault((parts.scheme, parts.path.rstrip("/")), []).append(host)
    out = []
    for (scheme, prefix), hosts in entries.items():
        entry: dict[str, Any] = {"scheme": scheme, "api_version": "v2"}
        if prefix:
            entry["path_prefix"] = prefix
        entry["static_configs"] = [{"targets": hosts}]
        out.append(entry)
    return out


def alerting_section(urls: Sequence[str]) -> dict[str, Any]:
    return {"alertmanagers": alertmanager_targets(urls)} if urls else {}


def _receiver(name: str, receiver: Receiver, smtp: Smtp | None) -> dict[str, Any]:
    if receiver.kind == "webhook":
        return {"name": name, "webhook_configs": [{"url": receiver.target, "send_resolved": True}]}
    if smtp is None:
        raise ConfigError("a mailto: receiver needs --smtp-smarthost and --smtp-from")
    return {
        "name": name,
        "email_configs": [
            {
                "to": receiver.target,
                "from": smtp.sender,
                "smarthost": smtp.smarthost,
                "send_resolved": True,
                "headers": {"Subject": _SUBJECT},
            }
        ],
    }


def _inhibit_rules() -> list[dict[str, Any]]:
    return [
        {
            "source_matchers": [f'alertname="{source}"'],
            "target_matchers": [f'alertname=~"{"|".join(targets)}"'],
            "equal": [CF_SERVICE_INSTANCE_GUID],
        }
        for source, targets in INHIBITIONS
    ]


def routing_config(
    support: Receiver,
    platform: Receiver | None = None,
    smtp: Smtp | None = None,
    *,
    group_wait: str = "30s",
    group_interval: str = "5m",
    repeat_interval: str = "4h",
) -> dict[str, Any]:
    """The example routing: ``audience="tenant"`` alerts to the support queue, grouped per
    alert, organization and service; anything else to ``platform`` (default: the support
    queue too)."""
    if smtp is not None and (":" not in smtp.smarthost or "@" not in smtp.sender):
        raise ConfigError("--smtp-smarthost must be HOST:PORT and --smtp-from an email address")
    receivers = [_receiver(SUPPORT_RECEIVER, support, smtp)]
    receivers.append(_receiver(PLATFORM_RECEIVER, platform or support, smtp))
    return {
        "route": {
            "receiver": PLATFORM_RECEIVER,
            "group_by": list(GROUP_BY),
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
            "routes": [
                # Child routes inherit group_by and the timings. A per-organization route
                # (matchers: cf_organization_guid="...") goes before this one.
                {"matchers": ['audience="tenant"'], "receiver": SUPPORT_RECEIVER},
            ],
        },
        "inhibit_rules": _inhibit_rules(),
        "receivers": receivers,
    }


def render(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False, width=200)
