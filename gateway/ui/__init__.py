"""The tenant page: a static, offline single page served by the gateway at /ui/.

After HTTP basic auth with a binding's credentials it lists the tenant's scraped services
with their health and charts one metric, using only the gateway's own Prometheus API.
"""

from gateway.ui.docs import DOCS_ROUTE, add_docs_routes
from gateway.ui.page import UI_PREFIX, create_ui_app

__all__ = ["DOCS_ROUTE", "UI_PREFIX", "add_docs_routes", "create_ui_app"]
