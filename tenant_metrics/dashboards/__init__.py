"""Grafana dashboards for tenants (JSON files here, written by ``python -m tenant_metrics.dashboards.build``)."""
