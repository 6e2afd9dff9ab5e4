"""The base both API clients (Aiven, Cloud Controller) stand on.

One ``JsonHttp`` per client (sd/http.py): a ``requests`` session, connect and read
timeouts, retries with backoff on 5xx/408/timeouts/resets (idempotent calls only) and on
429 (Retry-After or "try again in Ns" honoured, up to a bound), every failure an
``ApiError`` naming the API and its own message, never a credential. Subclasses add only
their URLs, authentication and parsing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from sd.http import DEFAULT_RETRY, ApiError, FailureKind, JsonHttp, RetryPolicy


def bad_response(api: str, message: str) -> ApiError:
    """The answer had the wrong shape (a parse failure, retried like a cut-off body)."""
    return ApiError(api, FailureKind.BAD_RESPONSE, message)


class ApiClient:
    """``api`` names the upstream in errors and in ``sd_api_requests_total``."""

    api: ClassVar[str]

    def __init__(
        self,
        *,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.http = JsonHttp(
            self.api,
            timeout=timeout,
            connect_timeout=connect_timeout,
            retry=retry,
            sleep=sleep or time.sleep,
        )

    @property
    def calls(self) -> int:
        """Requests sent, retries included."""
        return self.http.calls

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(self, method: str, url: str, *, headers: Mapping[str, str], **kwargs: Any) -> Any:
        """Send with the shared discipline; the parsed JSON body (None when empty)."""
        return self.http.request(method, url, headers=headers, **kwargs)[1]

    def _bad(self, message: str) -> ApiError:
        return bad_response(self.api, message)
