"""The HTTP discipline both API edges (Aiven, Cloud Controller) share.

Timeouts on every call; 429 honoured (Retry-After, else "try again in Ns"); 5xx, 408,
timeouts, resets and cut-off bodies retried with exponential backoff (only where a repeat
is safe); every body parsed once; every failure raised as an ``ApiError`` with a
``FailureKind`` and the API's own message, never the request's credentials.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import requests
import urllib3

from tenant_metrics.core.errors import RateLimited, UpstreamError, UpstreamTimeout


class FailureKind(StrEnum):
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    BAD_RESPONSE = "bad_response"  # truncated or invalid JSON, or the wrong shape
    AUTH = "auth"
    CLIENT_ERROR = "client_error"
    DATABASE = "database"
    INTERNAL = "internal"


class ApiError(UpstreamError):
    """An upstream API failed; ``str(e)`` carries the API's message and never a secret."""

    def __init__(
        self,
        api: str,
        kind: FailureKind,
        message: str,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{api}: {message}" + (f" (status {status})" if status else ""))
        self.api = api
        self.kind = kind
        self.status = status
        self.retry_after = retry_after
        self.api_message = message


class ApiTimeout(ApiError, UpstreamTimeout):
    pass


class ApiRateLimited(ApiError, RateLimited):
    pass


try:  # orjson parses a 25 MB service list ~3x faster than json; json is the fallback.
    import orjson

    def parse_json(body: bytes) -> Any:
        return orjson.loads(body)

    _JSON_ERRORS: tuple[type[Exception], ...] = (ValueError, orjson.JSONDecodeError)
except ImportError:  # pragma: no cover - depends on the install

    def parse_json(body: bytes) -> Any:
        return json.loads(body)

    _JSON_ERRORS = (ValueError,)


_TRY_AGAIN = re.compile(r"try again in (\d+(?:\.\d+)?)\s*s", re.IGNORECASE)


def retry_after_seconds(headers: Mapping[str, str], message: str) -> float | None:
    """Retry-After (seconds) if sent, else Aiven's "try again in Ns", else None."""
    raw = headers.get("Retry-After")
    if raw:
        try:
            return max(0.0, float(raw))
        except ValueError:
            pass
    found = _TRY_AGAIN.search(message or "")
    return float(found.group(1)) if found else None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4  # tries in total for a retryable failure
    backoff: float = 0.5  # first pause; doubles each time
    max_backoff: float = 8.0
    max_retry_after: float = 60.0  # a 429 asking for longer than this is raised, not slept


DEFAULT_RETRY = RetryPolicy()


def message_of(body: bytes, fallback: str) -> str:
    """The API's own error message: Aiven's ``message``, CC's ``errors[0].detail``, UAA's
    ``error_description``; an HTML page (a load balancer's 5xx) becomes the fallback."""
    try:
        data = parse_json(body)
    except _JSON_ERRORS:
        return fallback
    if isinstance(data, dict):
        if isinstance(data.get("message"), str):
            return str(data["message"])
        errors = data.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            text = first.get("detail") or first.get("message") or fallback
            title = first.get("title")
            return f"{title}: {text}" if title else str(text)
        if isinstance(data.get("error_description"), str):
            return str(data["error_description"])
    return fallback


class JsonHttp:
    """One ``requests.Session`` per API with the policy above; ``calls`` counts requests sent."""

    def __init__(
        self,
        api: str,
        *,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
        verify: bool | str = True,
    ) -> None:
        self.api = api
        self.timeout = (min(connect_timeout, timeout), timeout)
        self.retry = retry
        self.sleep = sleep
        self.session = session or requests.Session()
        self.session.verify = verify
        self.calls = 0

    def close(self) -> None:
        self.session.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Any = None,
        json_body: Any = None,
        data: Any = None,
        auth: Any = None,
        idempotent: bool | None = None,
    ) -> tuple[int, Any]:
        """Send and parse. Non-idempotent calls (POST) are repeated only after a 429, which
        the server refused before doing anything; after a 5xx or timeout the caller re-checks."""
        safe = method in ("GET", "HEAD") if idempotent is None else idempotent
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._once(method, url, headers, params, json_body, data, auth)
            except ApiError as exc:
                pause = self._pause_for(exc, attempt, safe)
                if pause is None:
                    raise
                self.sleep(pause)

    def _pause_for(self, exc: ApiError, attempt: int, safe: bool) -> float | None:
        if attempt >= self.retry.attempts:
            return None
        if exc.kind is FailureKind.RATE_LIMITED:
            wait = exc.retry_after
            if wait is None:
                return float(min(self.retry.backoff * 2.0 ** (attempt - 1), self.retry.max_backoff))
            return wait if wait <= self.retry.max_retry_after else None
        retryable = exc.kind in (
            FailureKind.TIMEOUT,
            FailureKind.CONNECTION,
            FailureKind.SERVER_ERROR,
            FailureKind.BAD_RESPONSE,
        )
        if not (safe and retryable):
            return None
        return float(min(self.retry.backoff * 2.0 ** (attempt - 1), self.retry.max_backoff))

    def _once(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        params: Any,
        json_body: Any,
        data: Any,
        auth: Any,
    ) -> tuple[int, Any]:
        self.calls += 1
        try:
            resp = self.session.request(
                method,
                url,
                headers=dict(headers),
                params=params,
                json=json_body,
                data=data,
                auth=auth,
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
            )
            # One read of the whole body (requests' .content reads 10 KB chunks: slow for 25 MB);
            # urllib3 enforces Content-Length, so a cut-off body raises here.
            try:
                body = resp.raw.read(decode_content=True)
            finally:
                resp.close()
        except (requests.Timeout, urllib3.exceptions.TimeoutError) as exc:
            raise ApiTimeout(self.api, FailureKind.TIMEOUT, f"{method} timed out") from exc
        except (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
            urllib3.exceptions.ProtocolError,
            urllib3.exceptions.DecodeError,
        ) as exc:
            raise ApiError(
                self.api, FailureKind.BAD_RESPONSE, f"{method} response was cut off"
            ) from exc
        except requests.ConnectionError as exc:
            raise ApiError(self.api, FailureKind.CONNECTION, f"{method} could not connect") from exc
        except requests.RequestException as exc:
            raise ApiError(
                self.api, FailureKind.CONNECTION, f"{method} failed: {type(exc).__name__}"
            ) from exc
        status = resp.status_code
        if status >= 400:
            self._raise_for(status, resp.headers, body)
        try:
            return status, parse_json(body) if body else None
        except _JSON_ERRORS as exc:
            raise ApiError(
                self.api, FailureKind.BAD_RESPONSE, "response is not valid JSON", status
            ) from exc

    def _raise_for(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        message = message_of(body, f"HTTP {status}")
        if status == 429:
            raise ApiRateLimited(
                self.api,
                FailureKind.RATE_LIMITED,
                message,
                status,
                retry_after_seconds(headers, message),
            )
        if status in (401, 403):
            raise ApiError(self.api, FailureKind.AUTH, message, status)
        if status >= 500 or status == 408:
            raise ApiError(self.api, FailureKind.SERVER_ERROR, message, status)
        raise ApiError(self.api, FailureKind.CLIENT_ERROR, message, status)


def expect_dict(api: str, value: Any, key: str) -> Any:
    """``value[key]`` from a JSON object, or a BAD_RESPONSE naming what was missing."""
    if not isinstance(value, dict) or key not in value:
        raise ApiError(api, FailureKind.BAD_RESPONSE, f"response has no {key!r}")
    return value[key]
