"""The tenant guide, public at /docs/tenant-guide.md: the catalog's documentation URL.

Cloud Foundry shows the broker's ``documentationUrl`` in ``cf marketplace`` before anyone
has credentials, so this route needs none. It serves one fixed file, read once at start.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "tenant-guide.md"
DOCS_ROUTE = "tenant_guide"
DOCS_PATH = "/docs/tenant-guide.md"


def add_docs_routes(router: web.UrlDispatcher, guide: Path = GUIDE) -> None:
    """``GET /docs/tenant-guide.md`` as plain text (browsers show it rather than download it)."""
    body = guide.read_bytes() if guide.is_file() else None

    async def tenant_guide(request: web.Request) -> web.StreamResponse:
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(
            body=body,
            headers={
                "Content-Type": "text/plain; charset=utf-8",
                "Cache-Control": "public, max-age=300",
                "X-Content-Type-Options": "nosniff",
            },
        )

    router.add_get(DOCS_PATH, tenant_guide, name=DOCS_ROUTE)
