"""tenant-metrics: per-tenant metrics for Cloud Foundry (broker, sd and gateway share this core).

Layers, from the ground up (tests/core/test_layout.py enforces them):

- ``tenant_metrics.core``, ``tenant_metrics.fakes``, ``tenant_metrics.dashboards``: shared
  code and data; they import none of the parts.
- the parts ``broker``, ``sd``, ``gateway`` (top-level packages): each imports the shared
  core, never another part.
- ``tenant_metrics.cli``, ``tenant_metrics.demo``, ``tenant_metrics.world``: above the
  parts; they may use all of them.
"""

__version__ = "0.1.0"  # the one place; pyproject.toml reads it (the apps run from source on CF)
