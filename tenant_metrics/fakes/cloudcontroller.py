"""A fake Cloud Controller v3 and UAA (what sd uses), following docs/external-apis.md.

- ``GET /`` links to the UAA (served by the same fake under ``/uaa``);
- ``POST /uaa/oauth/token`` (client_credentials, HTTP Basic or form credentials) issues
  opaque tokens that expire after ``token_ttl`` seconds of the injected clock, or at once
  with ``expire_tokens()``;
- ``GET /v3/service_instances`` with ``guids``, ``per_page``, ``page``,
  ``fields[space]`` and ``fields[space.organization]``: the real envelope (pagination with
  absolute links, ``included`` spaces/orgs of the current page only, only the requested
  fields), the real errors (``CF-BadQueryParameter``, ``CF-NotAuthenticated``,
  ``CF-InvalidAuthToken``) and nginx's 414 HTML page for request lines over 8 KB.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode

from tenant_metrics.fakes._http import FakeServer, Reply, Request

SPACE_FIELDS = ("guid", "name", "relationships.organization")
ORG_FIELDS = ("guid", "name")
MAX_REQUEST_LINE = 8192


def _cf_error(status: int, code: int, title: str, detail: str) -> Reply:
    return Reply.json(status, {"errors": [{"code": code, "title": title, "detail": detail}]})


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
    ) -> None:
        super().__init__(host, port)
        self.clients = {client_id: client_secret}
        self.token_ttl = token_ttl
        self.clock = clock
        self.tokens: dict[str, float] = {}  # token -> expiry (clock seconds)
        self.tokens_issued = 0
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
        with self.lock:
            self.tokens.clear()

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
                        "login": {"href": f"{self.url}/uaa"},
                        "uaa": {"href": f"{self.url}/uaa"},
                        "log_cache": {"href": f"{self.url}/log-cache"},
                    }
                },
            )
        if req.path == "/uaa/oauth/token" and req.method == "POST":
            return self._token(req)
        if req.path.startswith("/v3/"):
            failure = self._authenticate(req)
            if failure is not None:
                return failure
            if req.path == "/v3/service_instances" and req.method == "GET":
                return self._list_instances(req)
            if req.path.startswith("/v3/service_instances/") and req.method == "GET":
                guid = req.path.rsplit("/", 1)[1]
                with self.lock:
                    inst = self.instances.get(guid)
                    if inst is None:
                        return _cf_error(
                            404, 10010, "CF-ResourceNotFound", "Service instance not found"
                        )
                    return Reply.json(200, self._instance_json(inst))
        return _cf_error(404, 10000, "CF-NotFound", "Unknown request")

    def _token(self, req: Request) -> Reply:
        form = {k: v[0] for k, v in parse_qs(req.body.decode(errors="replace")).items()}
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = req.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                client_id = secret = None
        if "grant_type" not in form:
            return Reply.json(
                400, {"error": "invalid_request", "error_description": "Missing grant type"}
            )
        if form["grant_type"] != "client_credentials":
            return Reply.json(
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": f"Unsupported grant type: {form['grant_type']}",
                },
            )
        if client_id is None or self.clients.get(client_id) != secret:
            return Reply.json(
                401,
                {"error": "unauthorized", "error_description": "Bad credentials"},
                headers={"WWW-Authenticate": 'Basic realm="UAA/client", error="unauthorized"'},
            )
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = self.clock() + self.token_ttl
            self.tokens_issued += 1
        return Reply.json(
            200,
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": int(self.token_ttl) - 1,
                "scope": "cloud_controller.global_auditor",
                "jti": secrets.token_hex(8),
            },
        )

    def _authenticate(self, req: Request) -> Reply | None:
        auth = req.headers.get("authorization")
        if not auth:
            return _cf_error(401, 10002, "CF-NotAuthenticated", "Authentication error")
        scheme, _, token = auth.partition(" ")
        with self.lock:
            expiry = self.tokens.get(token)
        if scheme.lower() != "bearer" or expiry is None or expiry <= self.clock():
            return _cf_error(401, 1000, "CF-InvalidAuthToken", "Invalid Auth Token")
        return None

    def _list_instances(self, req: Request) -> Reply:
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
            rows = list(self.instances.values())
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
