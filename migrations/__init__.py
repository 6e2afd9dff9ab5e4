"""Alembic migrations; run with ``tenant-metrics db upgrade``."""
