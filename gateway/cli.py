"""`tenant-metrics` subcommands for gateway."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add this part's subcommands to the CLI (filled in by the gateway work)."""
