"""The few HTML pages of sign-in and sign-out (every value escaped; styles from the page's CSS)."""

from __future__ import annotations

import html

from aiohttp import web

STYLE = "/ui/static/style.css"


def page(status: int, title: str, message: str, hint: str = "", *, link: tuple[str, str] | None = None,
         extra_id: str = "") -> web.Response:
    link_html = ""
    if link is not None:
        href, text = link
        link_html = f'<p><a id="sso-link" href="{html.escape(href)}">{html.escape(text)}</a></p>'
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        f'<link rel=stylesheet href="{STYLE}"></head><body>'
        f'<main class="notice" id="{html.escape(extra_id or "sso-page")}"><h1>{html.escape(title)}</h1>'
        f"<p>{html.escape(message)}</p>"
        + (f"<p class=hint>{html.escape(hint)}</p>" if hint else "")
        + link_html
        + "</main></body></html>"
    )
    resp = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    resp.headers["Cache-Control"] = "no-store"
    return resp


def start_again(instance: str | None, reason: str) -> web.Response:
    link = (f"/ui/instances/{instance}", "Sign in again") if instance else None
    return page(400, "Sign-in could not be completed", reason,
                "Open the dashboard link of your service instance again (`cf service NAME` shows it).",
                link=link, extra_id="sso-refused")


def forbidden(user_name: str, instance: str) -> web.Response:
    return page(
        403, "No access to this service instance",
        f"You are signed in to Cloud Foundry as {user_name}, but you have no role that lets you "
        f"see service instance {instance}.",
        "A Space Developer, Space Manager, Space Auditor or Space Supporter of the instance's space, "
        "or an Org Manager of its organisation, may open this page. Ask a Space Manager or Org "
        "Manager to give you a role (`cf set-space-role`), then open the dashboard link again.",
        extra_id="sso-forbidden",
    )


def unavailable(what: str) -> web.Response:
    return page(503, "Temporarily unavailable",
                f"Signing in needs {what}, which did not answer in time.",
                "Nothing is wrong with your account. Try again in a minute; if it persists, "
                "contact the platform operators.", extra_id="sso-unavailable")


def unknown_instance(instance: str) -> web.Response:
    return page(404, "Unknown service instance",
                f"There is no tenant-metrics service instance {instance}.",
                "Check the dashboard link (`cf service NAME`); the instance may have been deleted.",
                extra_id="sso-unknown")


def not_enabled() -> web.Response:
    return page(404, "Single sign-on is not enabled",
                "The platform operators have not turned on sign-in with Cloud Foundry for this gateway.",
                "Use the username and password of a service key instead (`cf service-key INSTANCE KEY`).",
                link=("/ui/", "Open the tenant page"), extra_id="sso-off")


def signed_out(login_logout: str | None) -> web.Response:
    link = (login_logout, "Also sign out of Cloud Foundry") if login_logout else None
    return page(200, "Signed out", "You are signed out of the tenant metrics page.",
                "You are still signed in to Cloud Foundry in this browser until you sign out there too.",
                link=link, extra_id="sso-signed-out")
