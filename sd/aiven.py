"""The Aiven edge: a thin ``requests`` client for the four calls sd needs, parsed into values.

Why not aiven-client: no default timeout, no 429/5xx handling, and every JSON body is
parsed twice (2 s of CPU for 10,000 services; docs/external-apis.md §4).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from sd.apiclient import ApiClient, bad_response
from sd.http import DEFAULT_RETRY, ApiError, RetryPolicy, expect_dict

API = "aiven"
PROMETHEUS = "prometheus"


@dataclass(frozen=True, slots=True)
class Integration:
    """One entry of a service's ``service_integrations`` (``id`` None: a placeholder, not real)."""

    id: str | None
    integration_type: str
    enabled: bool
    active: bool
    dest_endpoint_id: str | None
    source_service: str


@dataclass(frozen=True, slots=True)
class AivenService:
    name: str
    type: str
    state: str
    plan: str
    cloud: str
    host: str | None
    node_count: int
    tags: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    integrations: tuple[Integration, ...] = ()

    def has_prometheus_integration(self, endpoint_id: str) -> bool:
        """Ours means: prometheus, enabled, a real id (not a null placeholder), our endpoint."""
        return any(
            i.integration_type == PROMETHEUS
            and i.enabled
            and i.id
            and i.dest_endpoint_id == endpoint_id
            for i in self.integrations
        )


@dataclass(frozen=True, slots=True)
class IntegrationEndpoint:
    id: str
    name: str
    type: str
    username: str | None
    password: str | None = field(default=None, repr=False)


def _bad(message: str) -> ApiError:
    return bad_response(API, message)


def parse_integration(raw: Any) -> Integration:
    if not isinstance(raw, dict):
        raise _bad("integration is not an object")
    iid = raw.get("service_integration_id")
    return Integration(
        id=str(iid) if iid else None,
        integration_type=str(raw.get("integration_type") or ""),
        enabled=bool(raw.get("enabled")),
        active=bool(raw.get("active")),
        dest_endpoint_id=raw.get("dest_endpoint_id"),
        source_service=str(raw.get("source_service") or ""),
    )


def parse_service(raw: Any) -> AivenService:
    """One service object; only the fields sd uses are read (the rest holds passwords)."""
    if not isinstance(raw, dict):
        raise _bad("service is not an object")
    try:
        name, stype, state = raw["service_name"], raw["service_type"], raw["state"]
    except KeyError as exc:
        raise _bad(f"service has no {exc.args[0]!r}") from None
    params = raw.get("service_uri_params") or {}
    host = params.get("host") if isinstance(params, dict) else None
    tags = raw.get("tags") or {}
    node_count = raw.get("node_count")
    return AivenService(
        name=str(name),
        type=str(stype),
        state=str(state),
        plan=str(raw.get("plan") or ""),
        cloud=str(raw.get("cloud_name") or ""),
        host=str(host) if host else None,
        node_count=int(node_count)
        if isinstance(node_count, int)
        else len(raw.get("node_states") or ()),
        tags={str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else {},
        # Only prometheus entries matter to sd; the list also holds every other kind and placeholders.
        integrations=tuple(
            parse_integration(i)
            for i in raw.get("service_integrations") or ()
            if isinstance(i, dict) and i.get("integration_type") == PROMETHEUS
        ),
    )


class AivenClient(ApiClient):
    api = API

    def __init__(
        self,
        base_url: str,
        token: str,
        project: str,
        *,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__(timeout=timeout, connect_timeout=connect_timeout, retry=retry, sleep=sleep)
        self._base = f"{base_url.rstrip('/')}/v1/project/{quote(project, safe='')}"
        self._headers = {"Authorization": f"aivenv1 {token}", "Accept": "application/json"}

    def __repr__(self) -> str:
        return f"AivenClient({self._base!r})"

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        return self._request("GET", self._base + path, headers=self._headers, params=params)

    def list_services(self) -> list[AivenService]:
        """``GET /v1/project/{p}/service``: the whole project in one unpaged answer.

        The cyclic GC is paused while the body (tens of MB at 10,000 services, no cycles)
        is parsed: otherwise it rescans the growing object graph again and again, which
        cost more CPU than the parsing itself."""
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            services = expect_dict(API, self._get("/service"), "services")
            if not isinstance(services, list):
                raise _bad("'services' is not a list")
            return [parse_service(s) for s in services]
        finally:
            if was_enabled:
                gc.enable()

    def get_service(self, name: str) -> AivenService:
        return parse_service(
            expect_dict(API, self._get(f"/service/{quote(name, safe='')}"), "service")
        )

    def get_endpoint(self, endpoint_id: str) -> IntegrationEndpoint:
        """The Prometheus endpoint with its basic-auth secrets (``include_secrets=true``)."""
        raw = expect_dict(
            API,
            self._get(
                f"/integration_endpoint/{quote(endpoint_id, safe='')}", {"include_secrets": "true"}
            ),
            "service_integration_endpoint",
        )
        if not isinstance(raw, dict):
            raise _bad("endpoint is not an object")
        cfg = raw.get("user_config") or {}
        return IntegrationEndpoint(
            id=str(raw.get("endpoint_id")),
            name=str(raw.get("endpoint_name") or ""),
            type=str(raw.get("endpoint_type") or ""),
            username=cfg.get("basic_auth_username"),
            password=cfg.get("basic_auth_password"),
        )

    def create_prometheus_integration(self, service: str, endpoint_id: str) -> Integration:
        body = {
            "integration_type": PROMETHEUS,
            "source_service": service,
            "dest_endpoint_id": endpoint_id,
        }
        data = self._request("POST", self._base + "/integration", headers=self._headers, json_body=body)
        return parse_integration(expect_dict(API, data, "service_integration"))

    def project_ca(self) -> str:
        cert = expect_dict(API, self._get("/kms/ca"), "certificate")
        if not isinstance(cert, str):
            raise _bad("'certificate' is not a string")
        return cert
