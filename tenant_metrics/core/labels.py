"""The label names every scrape target carries; sd writes them and the gateway enforces them."""

from __future__ import annotations

from enum import StrEnum

CF_ORGANIZATION_GUID = "cf_organization_guid"
CF_SPACE_GUID = "cf_space_guid"
CF_SERVICE_INSTANCE_GUID = "cf_service_instance_guid"
CF_ORGANIZATION_NAME = "cf_organization_name"
CF_SPACE_NAME = "cf_space_name"
CF_SERVICE_INSTANCE_NAME = "cf_service_instance_name"
AIVEN_SERVICE_NAME = "aiven_service_name"
AIVEN_SERVICE_TYPE = "aiven_service_type"
AIVEN_PLAN = "aiven_plan"
AIVEN_CLOUD = "aiven_cloud"

TARGET_LABELS: tuple[str, ...] = (
    CF_ORGANIZATION_GUID,
    CF_SPACE_GUID,
    CF_SERVICE_INSTANCE_GUID,
    CF_ORGANIZATION_NAME,
    CF_SPACE_NAME,
    CF_SERVICE_INSTANCE_NAME,
    AIVEN_SERVICE_NAME,
    AIVEN_SERVICE_TYPE,
    AIVEN_PLAN,
    AIVEN_CLOUD,
)


class Scope(StrEnum):
    """What a metrics instance's credentials may see; the plan name is the scope."""

    SPACE = "space"
    ORG = "org"

    @property
    def label(self) -> str:
        """The label the gateway enforces for this scope."""
        return CF_SPACE_GUID if self is Scope.SPACE else CF_ORGANIZATION_GUID
