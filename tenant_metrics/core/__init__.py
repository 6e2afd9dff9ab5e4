"""What the broker, sd and the gateway share: settings, database, models, errors, logging, credentials, labels.

Nothing here imports a part (tests/core/test_layout.py)."""
