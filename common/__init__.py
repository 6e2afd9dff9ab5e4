"""Code shared by the broker, sd and the gateway: config, database, errors, labels, logging, CLI."""
