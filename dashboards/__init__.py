"""Grafana dashboards for tenants (JSON files here, written by ``python -m dashboards.build``)."""
