"""One client for the platform gateway: its health checks and its admin API.

Every call has the block's timeout. 429, 5xx, timeouts and dropped connections are
tried again, up to the block's `attempts`, after `backoff_seconds` doubled each time
(or the gateway's own Retry-After, up to a minute); any other answer fails at once.
Errors are one line naming the endpoint and the status (`gateway: POST
/admin/pos/failover answered HTTP 403: invalid token`), and the admin token never
appears in a message: it is scrubbed from the gateway's own error text too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

import httpx

from blocks.channels.base import (
    ChannelError,
    endpoint_of,
    error_text,
    http_client,
    status_error,
    transport_error,
)
from blocks.gateway import PlatformGateway
from blocks.pos import PROVIDERS
from feedback_ops.errors import ConfigError

CHANNEL = "gateway"
MAX_RETRY_AFTER_SECONDS = 60.0


class GatewayClient:
    """The gateway at `gateway.url`; use it as a context manager (one connection pool).

    `sleep` waits between tries: tests give it a recorder instead of waiting.
    """

    def __init__(
        self, gateway: PlatformGateway, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.base = gateway.base_url()
        self.endpoint = endpoint_of(self.base, what="the platform gateway", channel=CHANNEL)
        self.gateway = gateway
        self._token = gateway.admin_token.get_secret_value() if gateway.admin_token else ""
        self._sleep = sleep
        self._http = http_client(gateway.timeout_seconds)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # --- what the runbook's commands ask ---------------------------------------------

    def health(self) -> dict[str, Any]:
        """`GET /health`: the platform's own health answer."""
        return self._call("GET", "/health")

    def pos_health(self, provider: str) -> dict[str, Any]:
        """`GET /pos/health/{provider}`: the gateway's view of one POS provider."""
        return self._call("GET", f"/pos/health/{_provider(provider)}")

    def pos_failover(self, provider: str, reason: str) -> dict[str, Any]:
        """`POST /admin/pos/failover`: move the provider's traffic to its secondary
        endpoint, or back (the gateway decides by the reason and its state)."""
        body = {"provider": _provider(provider), "reason": reason}
        return self._call("POST", "/admin/pos/failover", body, admin=True)

    def maintenance_on(self, reason: str, estimated_duration: str) -> dict[str, Any]:
        """`POST /admin/maintenance`: the platform shows its maintenance page."""
        body = {"reason": reason, "estimated_duration": estimated_duration}
        return self._call("POST", "/admin/maintenance", body, admin=True)

    def maintenance_off(self) -> dict[str, Any]:
        """`DELETE /admin/maintenance`: the platform serves again."""
        return self._call("DELETE", "/admin/maintenance", admin=True)

    def dr_failover(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /admin/disaster-recovery/failover` with the runbook's body
        (`{"type": "regional", "target_region": ..., "reason": ...}`)."""
        return self._call("POST", "/admin/disaster-recovery/failover", dict(body), admin=True)

    def dr_status(self) -> dict[str, Any]:
        """`GET /admin/disaster-recovery/status`: how far a failover has come."""
        return self._call("GET", "/admin/disaster-recovery/status", admin=True)

    # --- one request, tried again when worth it --------------------------------------

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, admin: bool = False
    ) -> dict[str, Any]:
        what = f"{method} {path}"
        headers = {}
        if admin:
            if not self._token:
                raise ConfigError(
                    f"GATEWAY_ADMIN_TOKEN is not set: {what} needs the gateway's admin "
                    "token (block platform-gateway, field admin_token)"
                )
            headers["Authorization"] = f"Bearer {self._token}"
        wait = self.gateway.backoff_seconds
        for attempt in range(1, self.gateway.attempts + 1):
            try:
                response = self._http.request(
                    method, f"{self.base}{path}", json=body, headers=headers
                )
            except httpx.TransportError as exc:
                error = transport_error(
                    CHANNEL, what, self.endpoint, exc, self.gateway.timeout_seconds
                )
            else:
                where = f"{what} at {self.endpoint}"
                if response.is_success:
                    return _json_object(response, where)
                error = status_error(
                    CHANNEL, where, response, error_text(response), secrets=[self._token]
                )
            if not error.transient or attempt == self.gateway.attempts:
                raise error
            asked = error.retry_after
            self._sleep(asked if asked is not None and asked <= MAX_RETRY_AFTER_SECONDS else wait)
            wait *= 2
        raise AssertionError("unreachable")


def _provider(name: str) -> str:
    if name not in PROVIDERS:
        raise ConfigError(f"unknown POS provider {name!r}; known: {', '.join(PROVIDERS)}")
    return name


def _json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    """The answer's JSON object; an empty answer (204) is `{}`."""
    if response.status_code == 204 or not response.content:
        return {}
    kind = response.headers.get("content-type", "no content type").split(";")[0]
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ChannelError(
            CHANNEL, f"{what} answered with something that is not a JSON object ({kind})"
        )
    return body
