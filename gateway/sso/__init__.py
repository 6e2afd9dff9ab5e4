"""Dashboard single sign-on: tenants open the tenant page with their Cloud Foundry login.

Cloud Controller registers our UAA client from the broker's catalog (``dashboard_client``);
an instance's dashboard URL (``/ui/instances/{guid}``) starts OAuth 2 authorization code
with PKCE at the login server; the callback exchanges the code at UAA, asks Cloud
Controller whether the user may read the instance, and hands out an encrypted session
cookie that the page and the Prometheus API accept, scoped like a binding of that
instance. Permissions are asked again every ``recheck`` seconds. See docs/gateway.md,
"Dashboard single sign-on".
"""

from gateway.sso.settings import SsoSettings, sso_settings

__all__ = ["SsoSettings", "sso_settings"]
