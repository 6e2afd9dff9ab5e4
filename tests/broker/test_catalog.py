"""The catalog as Cloud Controller reads it: stable ids, plans as scopes, useful metadata."""

from __future__ import annotations

from openbrokerapi.helper import _to_dict

from broker.catalog import Catalog
from broker.config import CatalogSettings
from tenant_metrics.core.labels import Scope


def _dict() -> dict:
    return _to_dict(Catalog.from_settings(CatalogSettings()).to_osb())  # type: ignore[no-any-return]


def test_ids_are_stable_across_releases() -> None:
    # Changing these orphans every existing instance in Cloud Controller: never do it.
    service = _dict()
    assert service["id"] == "10cdfd27-97b4-4f39-9583-a56f77a858cd"
    assert {p["name"]: p["id"] for p in service["plans"]} == {
        "space": "bc41c325-d6d4-4177-8fb3-f2432b93957f",
        "org": "fb30f71d-2053-406f-af52-f2316f3871eb",
    }


def test_flags_and_metadata() -> None:
    service = _dict()
    assert service["name"] == "tenant-metrics"
    assert service["bindable"] is True and service["plan_updateable"] is True
    assert service["instances_retrievable"] is True and service["bindings_retrievable"] is False
    assert service["allow_context_updates"] is True
    meta = service["metadata"]
    for key in ("displayName", "longDescription", "documentationUrl", "providerDisplayName", "supportUrl", "imageUrl"):
        assert isinstance(meta[key], str) and meta[key]
    assert meta["documentationUrl"].endswith("/docs/tenant-guide.md")
    for plan in service["plans"]:
        assert plan["free"] is True
        assert plan["metadata"]["displayName"] and len(plan["metadata"]["bullets"]) >= 2
        params = plan["schemas"]["service_instance"]["create"]["parameters"]
        assert params["additionalProperties"] is False


def test_scope_lookup_and_overrides() -> None:
    catalog = Catalog.from_settings(CatalogSettings(service_id="s", service_name="m", space_plan_id="a", org_plan_id="b"))
    assert catalog.scope_of("a") is Scope.SPACE and catalog.scope_of("b") is Scope.ORG
    assert catalog.scope_of("c") is None
    assert catalog.plan_id_of(Scope.ORG) == "b"
    osb = _to_dict(catalog.to_osb())
    assert osb["id"] == "s" and osb["name"] == "m" and [p["id"] for p in osb["plans"]] == ["a", "b"]


def test_marketplace_icon_is_an_inline_svg() -> None:
    import base64

    from broker.catalog import IMAGE_URL

    prefix = "data:image/svg+xml;base64,"
    assert IMAGE_URL.startswith(prefix)
    svg = base64.b64decode(IMAGE_URL[len(prefix):]).decode()
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<script" not in svg and "href" not in svg  # nothing active or remote in an icon
