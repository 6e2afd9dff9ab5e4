"""The tenant query gateway: authenticated, label-enforcing Prometheus HTTP API."""
