"""The tenant page: a static, offline single page served by the gateway at /ui/.

After HTTP basic auth with a binding's credentials it lists the tenant's scraped services
with their health and charts one metric, using only the gateway's own Prometheus API.
"""

from gateway.ui.blueprint import UI_PREFIX, create_ui_blueprint
from gateway.ui.docs import DOCS_BLUEPRINT, create_docs_blueprint

__all__ = ["DOCS_BLUEPRINT", "UI_PREFIX", "create_docs_blueprint", "create_ui_blueprint"]
