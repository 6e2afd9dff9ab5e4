"""The tenant guide, public at /docs/tenant-guide.md: the catalog's documentation URL.

Cloud Foundry shows the broker's ``documentationUrl`` in ``cf marketplace`` before anyone
has credentials, so this route needs none. It serves one fixed file, read once at start.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "tenant-guide.md"
DOCS_BLUEPRINT = "tenant_docs"


def create_docs_blueprint(guide: Path = GUIDE) -> Blueprint:
    """``GET /docs/tenant-guide.md`` as plain text (browsers show it rather than download it)."""
    bp = Blueprint(DOCS_BLUEPRINT, __name__)
    body = guide.read_bytes() if guide.is_file() else None

    @bp.get("/docs/tenant-guide.md")
    def tenant_guide() -> Response:
        if body is None:
            abort(404)
        resp = Response(body, status=200, content_type="text/plain; charset=utf-8")
        resp.headers["Cache-Control"] = "public, max-age=300"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp

    return bp
