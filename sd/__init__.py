"""Service discovery: Aiven services integrated with Prometheus, targets labelled with CF owners."""
