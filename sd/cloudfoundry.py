"""The Cloud Controller edge: who owns service instances (v3, in batches), with a UAA token.

One request per batch of at most 100 guids (CC's nginx refuses request lines over ~8 KB),
``fields[...]`` joining instance -> space -> org in the same answer (docs/external-apis.md
§0, §1.4). The client-credentials token is renewed before it expires and, on a 401
``CF-InvalidAuthToken``, fetched again and the request retried once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sd.apiclient import ApiClient, bad_response
from sd.http import DEFAULT_RETRY, ApiError, RetryPolicy, expect_dict

API = "cloudcontroller"
BATCH_SIZE = 100
SPACE_FIELDS = "guid,name,relationships.organization"
ORG_FIELDS = "guid,name"


@dataclass(frozen=True, slots=True)
class CfInstance:
    guid: str
    name: str
    space_guid: str
    space_name: str
    organization_guid: str
    organization_name: str


@dataclass(slots=True)
class _Token:
    value: str = field(repr=False)
    renew_at: float


def _bad(message: str) -> ApiError:
    return bad_response(API, message)


def parse_instances_page(data: Any) -> tuple[list[CfInstance], str | None]:
    """One page of ``/v3/service_instances`` with ``fields`` joins -> instances, next href."""
    resources = expect_dict(API, data, "resources")
    included = data.get("included") or {}
    spaces = {
        s["guid"]: s for s in included.get("spaces") or () if isinstance(s, dict) and "guid" in s
    }
    orgs = {
        o["guid"]: o
        for o in included.get("organizations") or ()
        if isinstance(o, dict) and "guid" in o
    }
    out = []
    for res in resources if isinstance(resources, list) else ():
        try:
            space_guid = res["relationships"]["space"]["data"]["guid"]
            space = spaces[space_guid]
            org_guid = space["relationships"]["organization"]["data"]["guid"]
            org = orgs[org_guid]
            out.append(
                CfInstance(
                    str(res["guid"]),
                    str(res.get("name") or ""),
                    str(space_guid),
                    str(space.get("name") or ""),
                    str(org_guid),
                    str(org.get("name") or ""),
                )
            )
        except (KeyError, TypeError) as exc:
            raise _bad(
                f"service instance cannot be joined to its space and org ({exc!s})"
            ) from None
    nxt = (data.get("pagination") or {}).get("next")
    return out, nxt.get("href") if isinstance(nxt, dict) else None


class CloudController(ApiClient):
    api = API

    def __init__(
        self,
        api_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        batch_size: int = BATCH_SIZE,
        retry: RetryPolicy = DEFAULT_RETRY,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__(timeout=timeout, connect_timeout=connect_timeout, retry=retry, sleep=sleep)
        self.api_url = api_url.rstrip("/")
        self._client = (client_id, client_secret)
        self._clock = clock
        self._batch = max(1, min(batch_size, BATCH_SIZE))
        self._uaa_url: str | None = None
        self._token: _Token | None = None
        self._lock = threading.Lock()
        self.tokens_fetched = 0

    def __repr__(self) -> str:
        return f"CloudController({self.api_url!r}, client_id={self._client[0]!r})"

    # -- token ----------------------------------------------------------------------------
    def _uaa(self) -> str:
        if self._uaa_url is None:
            root = self._request("GET", self.api_url + "/", headers={"Accept": "application/json"})
            try:
                self._uaa_url = str(root["links"]["uaa"]["href"]).rstrip("/")
            except (KeyError, TypeError):
                raise _bad("GET / has no links.uaa.href") from None
        return self._uaa_url

    def _access_token(self, force: bool = False) -> str:
        with self._lock:
            now = self._clock()
            if force or self._token is None or now >= self._token.renew_at:
                data = self._request(
                    "POST",
                    self._uaa() + "/oauth/token",
                    headers={"Accept": "application/json"},
                    data={"grant_type": "client_credentials"},
                    auth=self._client,
                    idempotent=True,
                )
                token = expect_dict(API, data, "access_token")
                ttl = float(data.get("expires_in") or 0)
                # Renew with a margin: a tenth of the lifetime, at most a minute.
                self._token = _Token(str(token), now + max(0.0, ttl - min(60.0, ttl / 10)))
                self.tokens_fetched += 1
            return self._token.value

    def _get(self, url: str, params: Any = None) -> Any:
        for retry in (False, True):
            headers = {
                "Authorization": f"bearer {self._access_token(force=retry)}",
                "Accept": "application/json",
            }
            try:
                return self._request("GET", url, headers=headers, params=params)
            except ApiError as exc:
                if retry or exc.status != 401:
                    raise
        raise AssertionError("unreachable")

    # -- owners ---------------------------------------------------------------------------
    def service_instances(self, guids: Iterable[str]) -> dict[str, CfInstance]:
        """Owners of the given instances; a guid CC does not know is simply absent."""
        wanted = sorted(set(guids))
        found: dict[str, CfInstance] = {}
        for start in range(0, len(wanted), self._batch):
            batch = wanted[start : start + self._batch]
            params: Any = {
                "guids": ",".join(batch),
                "per_page": str(len(batch)),
                "fields[space]": SPACE_FIELDS,
                "fields[space.organization]": ORG_FIELDS,
            }
            url: str | None = self.api_url + "/v3/service_instances"
            while url is not None:
                page, url = parse_instances_page(self._get(url, params))
                params = None  # follow pagination.next.href verbatim
                for inst in page:
                    found[inst.guid] = inst
        return found
