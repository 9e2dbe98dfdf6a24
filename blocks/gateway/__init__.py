"""The platform's API gateway: the block (where it is, the admin token) and its client.

The gateway answers the runbook's health checks (`/health`, `/pos/health/{provider}`)
and takes the operators' admin commands (`/admin/pos/failover`, `/admin/maintenance`,
`/admin/disaster-recovery/...`) with `Authorization: Bearer <admin token>`.
"""

from __future__ import annotations

from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, SecretStr

from feedback_ops.errors import ConfigError


class PlatformGateway(Block):
    """Where the platform's API gateway answers, and the admin token its admin API takes.

    Without a URL nothing can reach the gateway: a flow that needs it fails in one line
    naming GATEWAY_URL. Without a token the health checks still work, the admin
    commands fail naming GATEWAY_ADMIN_TOKEN.

    Example:
        Ask the gateway saved by `feedback-ops up` how it is:
        ```python
        from blocks.gateway import PlatformGateway
        from blocks.gateway.client import GatewayClient

        platform_gateway = PlatformGateway.load("BLOCK_NAME")
        with GatewayClient(platform_gateway) as gateway:
            print(gateway.health())
        ```
    """

    _block_type_name: ClassVar[str] = "Feedback Ops Platform Gateway"
    _block_type_slug: ClassVar[str] = "feedback-ops-platform-gateway"
    _description: ClassVar[str] = "The platform's API gateway and its admin token."
    # The admin API takes its token as an OAuth 2.0 bearer token.
    _documentation_url: ClassVar[HttpUrl] = HttpUrl("https://datatracker.ietf.org/doc/html/rfc6750")

    url: str | None = Field(
        default=None, description="Base URL of the gateway, e.g. https://api.ai-feedback.se."
    )
    admin_token: SecretStr | None = Field(
        default=None, description="Bearer token of the gateway's admin API."
    )
    timeout_seconds: float = Field(default=10.0, gt=0, description="Seconds per request.")
    attempts: int = Field(
        default=3, ge=1, le=10, description="Tries per request on 429, 5xx or no answer."
    )
    backoff_seconds: float = Field(
        default=1.0, ge=0, description="Wait before the second try; doubled for each next."
    )

    def base_url(self) -> str:
        """The gateway's URL without a trailing slash.

        Raises:
            ConfigError: no URL is configured; the message names GATEWAY_URL.
        """
        if not (self.url or "").strip():
            raise ConfigError(
                "GATEWAY_URL is not set: the platform gateway's base URL "
                "(block platform-gateway, field url)"
            )
        return str(self.url).strip().rstrip("/")
