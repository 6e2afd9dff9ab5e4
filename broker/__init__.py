"""The Open Service Broker: catalog, instances, bindings, audit trail."""
