"""A fake Cloud Controller v3 and UAA (what sd and the dashboard use), following
docs/external-apis.md.

- ``GET /`` links to the UAA (``/uaa``) and the login server (``/login``), both served by the
  fake (``tenant_metrics.fakes.uaa``);
- ``POST /uaa/oauth/token``: client_credentials for the sd client (opaque tokens that expire
  after ``token_ttl`` seconds of the injected clock, or at once with ``expire_tokens()``) and
  authorization_code (+PKCE) for dashboard clients; ``GET /uaa/userinfo``; the browser side
  (``/login/oauth/authorize``, the login form, ``/login/logout.do``);
- ``GET /v3/service_instances`` with ``guids``, ``per_page``, ``page``,
  ``fields[space]`` and ``fields[space.organization]``: the real envelope (pagination with
  absolute links, ``included`` spaces/orgs of the current page only, only the requested
  fields), the real errors (``CF-BadQueryParameter``, ``CF-NotAuthenticated``,
  ``CF-InvalidAuthToken``) and nginx's 414 HTML page for request lines over 8 KB;
- ``GET /v3/service_instances/:guid/permissions``: ``read``/``manage`` from the user's space
  and org roles, as cloud_controller_ng's ``show_permissions`` computes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from tenant_metrics.fakes._http import FakeServer, Reply, Request
from tenant_metrics.fakes.uaa import DASHBOARD_SCOPES, FakeUaa, IssuedToken, OAuthClient

SPACE_FIELDS = ("guid", "name", "relationships.organization")
ORG_FIELDS = ("guid", "name")
MAX_REQUEST_LINE = 8192
SPACE_ROLES = frozenset({"space_developer", "space_manager", "space_auditor", "space_supporter"})
ORG_ROLES = frozenset(
    {
        "organization_manager",
        "organization_auditor",
        "organization_billing_manager",
        "organization_user",
    }
)
# Roles that may read a space's instances (CC's readable spaces): any space role, or org manager.
SPACE_READERS = SPACE_ROLES
ORG_READERS = frozenset({"organization_manager"})
# Scopes: CC's read check passes with any of these; show_permissions also with its own scope.
GLOBAL_READ_SCOPES = frozenset(
    {
        "cloud_controller.admin",
        "cloud_controller.admin_read_only",
        "cloud_controller.global_auditor",
    }
)
READ_SCOPES = GLOBAL_READ_SCOPES | {"cloud_controller.read"}
PERMISSIONS_SCOPES = READ_SCOPES | {"cloud_controller_service_permissions.read"}


def _cf_error(status: int, code: int, title: str, detail: str) -> Reply:
    return Reply.json(status, {"errors": [{"code": code, "title": title, "detail": detail}]})


def _not_authorized() -> Reply:
    return _cf_error(
        403, 10003, "CF-NotAuthorized", "You are not authorized to perform the requested action"
    )


@dataclass(slots=True)
class _Instance:
    guid: str
    name: str
    space_guid: str
    created_at: str


class FakeCloudController(FakeServer):
    def __init__(
        self,
        client_id: str = "tenant-metrics-sd",
        client_secret: str = "sd-secret",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token_ttl: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        user_token_ttl: float = 43200.0,
        code_ttl: float = 300.0,
    ) -> None:
        super().__init__(host, port)
        self.token_ttl = token_ttl
        self.clock = clock
        self.uaa = FakeUaa(
            self.lock,
            clock,
            lambda: self.url,
            token_ttl=token_ttl,
            user_token_ttl=user_token_ttl,
            code_ttl=code_ttl,
        )
        self.uaa.add_client(
            OAuthClient(
                client_id,
                client_secret,
                grant_types=("client_credentials",),
                authorities=("cloud_controller.global_auditor",),
            )
        )
        # (user_id, space or org guid, role)
        self.roles: set[tuple[str, str, str]] = set()
        self.orgs: dict[str, str] = {}
        self.spaces: dict[str, tuple[str, str]] = {}  # guid -> (name, org guid)
        self.instances: dict[str, _Instance] = {}

    # -- state helpers --------------------------------------------------------------------
    def add_org(self, guid: str, name: str) -> None:
        with self.lock:
            self.orgs[guid] = name

    def add_space(self, guid: str, name: str, org_guid: str) -> None:
        with self.lock:
            self.spaces[guid] = (name, org_guid)

    def add_instance(self, guid: str, name: str, space_guid: str) -> None:
        with self.lock:
            self.instances[guid] = _Instance(
                guid, name, space_guid, f"2024-01-01T00:00:{len(self.instances) % 60:02d}Z"
            )

    def add_owner(
        self,
        instance_guid: str,
        instance_name: str,
        space_guid: str,
        space_name: str,
        org_guid: str,
        org_name: str,
    ) -> None:
        self.add_org(org_guid, org_name)
        self.add_space(space_guid, space_name, org_guid)
        self.add_instance(instance_guid, instance_name, space_guid)

    def rename_org(self, guid: str, name: str) -> None:
        with self.lock:
            self.orgs[guid] = name

    def rename_space(self, guid: str, name: str) -> None:
        with self.lock:
            self.spaces[guid] = (name, self.spaces[guid][1])

    def delete_instance(self, guid: str) -> None:
        with self.lock:
            self.instances.pop(guid, None)

    def expire_tokens(self) -> None:
        """Every token issued so far becomes invalid (as if it expired or UAA rotated keys)."""
        self.uaa.expire_tokens()

    @property
    def tokens_issued(self) -> int:
        return self.uaa.tokens_issued

    @property
    def login_url(self) -> str:
        return f"{self.url}/login"

    @property
    def uaa_url(self) -> str:
        return f"{self.url}/uaa"

    # -- dashboard SSO: clients, users, roles ---------------------------------------------
    def add_dashboard_client(
        self,
        client_id: str,
        secret: str,
        redirect_uri: str,
        scopes: tuple[str, ...] = DASHBOARD_SCOPES,
    ) -> None:
        """A client as Cloud Controller registers it from a catalog's ``dashboard_client``:
        authorization_code only, so no client_credentials and no refresh tokens."""
        self.uaa.add_client(
            OAuthClient(
                client_id,
                secret,
                grant_types=("authorization_code",),
                scopes=tuple(scopes),
                redirect_uri=redirect_uri,
            )
        )

    def add_user(self, user_name: str, password: str, *, email: str | None = None) -> str:
        """A UAA user who can sign in at the login form; returns the user's id (a guid)."""
        return self.uaa.add_user(user_name, password, email)

    def add_space_role(self, user_name: str, space_guid: str, role: str) -> None:
        if role not in SPACE_ROLES:
            raise ValueError(f"unknown space role {role!r}; one of {sorted(SPACE_ROLES)}")
        user_id = self.uaa.user(user_name).user_id
        with self.lock:
            self.roles.add((user_id, space_guid, role))

    def add_org_role(self, user_name: str, org_guid: str, role: str) -> None:
        if role not in ORG_ROLES:
            raise ValueError(f"unknown org role {role!r}; one of {sorted(ORG_ROLES)}")
        user_id = self.uaa.user(user_name).user_id
        with self.lock:
            self.roles.add((user_id, org_guid, role))

    def remove_role(self, user_name: str, guid: str, role: str) -> None:
        user_id = self.uaa.user(user_name).user_id
        with self.lock:
            self.roles.discard((user_id, guid, role))

    def revoke_user_tokens(self, user_name: str) -> None:
        """Every token issued to that user becomes invalid (UAA's per-user revocation)."""
        self.uaa.revoke_user_tokens(user_name)

    # -- routing --------------------------------------------------------------------------
    def call_key(self, req: Request) -> str:
        return f"{req.method} {req.path}"

    def route(self, req: Request) -> Reply:
        if len(req.raw_path) + len(req.method) + 10 > MAX_REQUEST_LINE:
            page = b"<html><head><title>414 Request-URI Too Large</title></head><body>nginx</body></html>"
            return Reply(414, page, "text/html")
        if req.path in ("/", "") and req.method == "GET":
            return Reply.json(
                200,
                {
                    "links": {
                        "self": {"href": self.url},
                        "cloud_controller_v3": {
                            "href": f"{self.url}/v3",
                            "meta": {"version": "3.180.0"},
                        },
                        "login": {"href": self.login_url},
                        "uaa": {"href": self.uaa_url},
                        "log_cache": {"href": f"{self.url}/log-cache"},
                    }
                },
            )
        if req.path.startswith(("/uaa", "/login")):
            reply = self.uaa.route(req)
            if reply is not None:
                return reply
        if req.path.startswith("/v3/"):
            token = self._authenticate(req)
            if isinstance(token, Reply):
                return token
            parts = req.path.strip("/").split("/")
            if parts[:2] == ["v3", "service_instances"] and req.method == "GET":
                if len(parts) == 4 and parts[3] == "permissions":
                    return self._permissions(token, parts[2])
                if not READ_SCOPES & set(token.scopes):
                    return _not_authorized()
                if len(parts) == 2:
                    return self._list_instances(req, token)
                if len(parts) == 3:
                    return self._show_instance(token, parts[2])
        return _cf_error(404, 10000, "CF-NotFound", "Unknown request")

    def _show_instance(self, token: IssuedToken, guid: str) -> Reply:
        with self.lock:
            inst = self.instances.get(guid)
            if inst is None or not self._can_read(token, inst):
                return _cf_error(404, 10010, "CF-ResourceNotFound", "Service instance not found")
            return Reply.json(200, self._instance_json(inst))

    def _permissions(self, token: IssuedToken, guid: str) -> Reply:
        """cloud_controller_ng's show_permissions: 404 only for an instance that does not exist;
        one the user cannot see answers 200 with both false."""
        if not PERMISSIONS_SCOPES & set(token.scopes):
            return _not_authorized()
        with self.lock:
            inst = self.instances.get(guid)
            if inst is None:
                return _cf_error(404, 10010, "CF-ResourceNotFound", "Service instance not found")
            manage = "cloud_controller.admin" in token.scopes or (
                token.user_id is not None
                and (token.user_id, inst.space_guid, "space_developer") in self.roles
            )
            return Reply.json(200, {"manage": manage, "read": self._can_read(token, inst)})

    def _can_read(self, token: IssuedToken, inst: _Instance) -> bool:
        """Global read scopes see everything; a user sees the instances of the spaces they hold a
        space role in, and of every space of the orgs they manage."""
        if GLOBAL_READ_SCOPES & set(token.scopes):
            return True
        if token.user_id is None:
            return False
        org_guid = self.spaces.get(inst.space_guid, ("", ""))[1]
        return any(
            (token.user_id, inst.space_guid, role) in self.roles for role in SPACE_READERS
        ) or any((token.user_id, org_guid, role) in self.roles for role in ORG_READERS)

    def _authenticate(self, req: Request) -> IssuedToken | Reply:
        auth = req.headers.get("authorization")
        if not auth:
            return _cf_error(401, 10002, "CF-NotAuthenticated", "Authentication error")
        scheme, _, token = auth.partition(" ")
        info = self.uaa.valid_token(token) if scheme.lower() == "bearer" else None
        if info is None:
            return _cf_error(401, 1000, "CF-InvalidAuthToken", "Invalid Auth Token")
        return info

    def _list_instances(self, req: Request, token: IssuedToken) -> Reply:
        allowed = {
            "guids",
            "names",
            "space_guids",
            "organization_guids",
            "page",
            "per_page",
            "order_by",
            "fields[space]",
            "fields[space.organization]",
            "type",
            "label_selector",
        }
        unknown = sorted(set(req.query) - allowed)
        if unknown:
            return _cf_error(
                400,
                10005,
                "CF-BadQueryParameter",
                f"Unknown query parameter(s): '{', '.join(unknown)}'.",
            )
        try:
            per_page = int(req.q("per_page") or 50)
            page = int(req.q("page") or 1)
        except ValueError:
            return _cf_error(400, 10005, "CF-BadQueryParameter", "Per page must be an integer")
        if not 1 <= per_page <= 5000:
            return _cf_error(
                400, 10005, "CF-BadQueryParameter", "Per page must be between 1 and 5000"
            )
        if page < 1:
            return _cf_error(400, 10005, "CF-BadQueryParameter", "Page must be greater than 0")
        space_fields = [f for f in (req.q("fields[space]") or "").split(",") if f]
        org_fields = [f for f in (req.q("fields[space.organization]") or "").split(",") if f]
        if any(f not in SPACE_FIELDS for f in space_fields):
            return _cf_error(
                400,
                10005,
                "CF-BadQueryParameter",
                "Fields valid keys for 'space' are: 'guid', 'name', 'relationships.organization'",
            )
        if any(f not in ORG_FIELDS for f in org_fields):
            return _cf_error(
                400,
                10005,
                "CF-BadQueryParameter",
                "Fields valid keys for 'space.organization' are: 'guid', 'name'",
            )
        with self.lock:
            rows = [r for r in self.instances.values() if self._can_read(token, r)]
            guids = req.q("guids")
            if guids is not None:
                wanted = set(guids.split(","))
                rows = [r for r in rows if r.guid in wanted]
            total = len(rows)
            pages = max(1, -(-total // per_page))
            chunk = rows[(page - 1) * per_page : page * per_page]
            resources = [self._instance_json(r, embed=False) for r in chunk]
            included: dict[str, list[dict[str, Any]]] = {}
            if space_fields:
                space_guids = sorted({r.space_guid for r in chunk})
                included["spaces"] = [self._space_json(g, space_fields) for g in space_guids]
                if org_fields:
                    org_guids = sorted({self.spaces[g][1] for g in space_guids})
                    included["organizations"] = [
                        {
                            k: v
                            for k, v in {"guid": g, "name": self.orgs[g]}.items()
                            if k in org_fields
                        }
                        for g in org_guids
                    ]
        return Reply.json(
            200,
            {
                "pagination": {
                    "total_results": total,
                    "total_pages": pages,
                    "first": {"href": self._page_href(req, 1, per_page)},
                    "last": {"href": self._page_href(req, pages, per_page)},
                    "next": {"href": self._page_href(req, page + 1, per_page)}
                    if page < pages
                    else None,
                    "previous": {"href": self._page_href(req, page - 1, per_page)}
                    if page > 1
                    else None,
                },
                "resources": resources,
                "included": included,
            },
        )

    def _page_href(self, req: Request, page: int, per_page: int) -> str:
        params = {k: v[0] for k, v in req.query.items()}
        params["page"], params["per_page"] = str(page), str(per_page)
        return f"{self.url}{req.path}?{urlencode(sorted(params.items()))}"

    def _space_json(self, guid: str, fields: list[str]) -> dict[str, Any]:
        name, org = self.spaces[guid]
        full: dict[str, Any] = {
            "guid": guid,
            "name": name,
            "relationships.organization": {"organization": {"data": {"guid": org}}},
        }
        out: dict[str, Any] = {}
        for f in fields:
            if f == "relationships.organization":
                out["relationships"] = full[f]
            else:
                out[f] = full[f]
        return out

    def _instance_json(self, inst: _Instance, embed: bool = True) -> dict[str, Any]:
        base = f"{self.url}/v3/service_instances/{inst.guid}"
        return {
            "guid": inst.guid,
            "created_at": inst.created_at,
            "updated_at": inst.created_at,
            "name": inst.name,
            "tags": [],
            "type": "managed",
            "maintenance_info": {},
            "upgrade_available": False,
            "dashboard_url": None,
            "last_operation": {
                "type": "create",
                "state": "succeeded",
                "description": "Operation succeeded",
                "created_at": inst.created_at,
                "updated_at": inst.created_at,
            },
            "relationships": {
                "space": {"data": {"guid": inst.space_guid}},
                "service_plan": {"data": {"guid": "5358d122-638e-11ea-afca-bf6e756684ac"}},
            },
            "metadata": {"labels": {}, "annotations": {}},
            "links": {
                "self": {"href": base},
                "space": {"href": f"{self.url}/v3/spaces/{inst.space_guid}"},
                "service_plan": {"href": f"{self.url}/v3/service_plans/5358d122"},
            },
        }


def main() -> None:
    """``python -m tenant_metrics.fakes.cloudcontroller --port 8098 --instances 10``: owners matching
    ``fakes.aiven.populate`` (instance i in space i//10 in org i//100)."""
    import argparse

    from tenant_metrics.fakes.aiven import instance_guid, org_guid, space_guid

    parser = argparse.ArgumentParser(
        description="Fake Cloud Controller v3 + UAA (tests, benchmarks, demo)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--client-id", default="tenant-metrics-sd")
    parser.add_argument("--client-secret", default="sd-secret")
    parser.add_argument("--instances", type=int, default=0)
    args = parser.parse_args()
    fake = FakeCloudController(args.client_id, args.client_secret, host=args.host, port=args.port)
    for i in range(args.instances):
        fake.add_owner(
            instance_guid(i),
            f"instance-{i}",
            space_guid(i),
            f"space-{i // 10}",
            org_guid(i),
            f"org-{i // 100}",
        )
    fake.start()
    print(f"fake Cloud Controller at {fake.url} (UAA at {fake.url}/uaa)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
