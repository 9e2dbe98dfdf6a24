"""The POS providers: the block (where Square, Shopify and Zettle are, how to log in,
what the platform expects of them) and the clients that read what each has configured
(`webhooks`, `subscriptions`), how each answers (`probes`), renew the platform's tokens
(`tokens`) and check every merchant's connection (`merchants`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, SecretStr

PROVIDERS = ("square", "shopify", "zettle")
"""The POS providers the platform integrates, by the names its gateway uses."""


JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
"""Zettle's grant: an access token for the API key, sent as the assertion."""


def provider_time(value: Any) -> datetime | None:
    """A timezone-aware datetime from a provider's answer or a stored column (an ISO
    text or a datetime; naive ones are UTC); None for none or empty."""
    if value is None or value == "":
        return None
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).strip())
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def reveal(secret: SecretStr | None) -> str:
    """A credential's text for a request header or form; "" when it is not set."""
    return secret.get_secret_value() if secret is not None else ""


SQUARE_EVENTS = ("payment.created", "payment.updated", "refund.created", "refund.updated")
SHOPIFY_TOPICS = ("orders/create", "orders/paid", "refunds/create")
ZETTLE_EVENTS = ("PurchaseCreated", "PurchaseUpdated")

MERCHANT_CONNECTIONS_QUERY = """\
SELECT id::text AS connection_id,
       business_id::text AS business_id,
       provider,
       external_location_id,
       config->>'access_token' AS access_token,
       config->>'shop_domain' AS shop_domain,
       (config->>'token_expires_at')::timestamptz AS token_expires_at
FROM pos_connections
WHERE status = 'active'"""
"""The active merchant connections, one row per business and provider, with the
merchant's token as the platform stores it (`config` JSON). A platform that keeps them
elsewhere edits the block's query; it must give these columns."""


class PosProviders(Block):
    """Credentials for the POS providers' APIs, their primary and secondary endpoints,
    the webhooks the platform expects of each, and the query that finds the merchants'
    connections in the platform's database.

    A provider without credentials is not configured: flows that read providers say
    so and skip it. The API URLs default to the providers' production endpoints; without
    a secondary endpoint a provider has nothing to fail over to.

    Example:
        Load the providers saved by `feedback-ops up`:
        ```python
        from blocks.pos import PosProviders

        providers = PosProviders.load("BLOCK_NAME")
        print(providers.configured())
        ```
    """

    _block_type_name: ClassVar[str] = "Feedback Ops POS Providers"
    _block_type_slug: ClassVar[str] = "feedback-ops-pos-providers"
    _description: ClassVar[str] = "Square, Shopify and Zettle API credentials."
    _documentation_url: ClassVar[HttpUrl] = HttpUrl(
        "https://developer.squareup.com/reference/square/webhook-subscriptions-api"
    )

    square_access_token: SecretStr | None = Field(default=None, description="Square token.")
    square_api_url: str = Field(
        default="https://connect.squareup.com", description="Square API base URL."
    )
    square_secondary_api_url: str | None = Field(
        default=None, description="Square's secondary endpoint, probed beside the primary."
    )
    square_version: str = Field(default="2024-10-17", description="Square-Version header.")
    square_application_id: str | None = Field(
        default=None, description="Square application id (OAuth client_id), for refreshes."
    )
    square_application_secret: SecretStr | None = Field(
        default=None, description="Square application secret, for token refreshes."
    )
    square_refresh_token: SecretStr | None = Field(
        default=None, description="Refresh token of the platform's Square OAuth token."
    )
    square_personal_access_token: SecretStr | None = Field(
        default=None,
        description="Square application's personal access token (webhook subscriptions).",
    )
    shopify_shop_domain: str | None = Field(
        default=None, description="The shop, e.g. feedback.myshopify.com."
    )
    shopify_access_token: SecretStr | None = Field(default=None, description="Admin API token.")
    shopify_api_url: str | None = Field(
        default=None, description="Shopify API base URL (default: https://<shop domain>)."
    )
    shopify_secondary_api_url: str | None = Field(
        default=None, description="Shopify's secondary endpoint, probed beside the primary."
    )
    shopify_api_version: str = Field(default="2024-10", description="Admin API version.")
    zettle_client_id: str | None = Field(default=None, description="Zettle OAuth client id.")
    zettle_api_key: SecretStr | None = Field(default=None, description="Zettle API key.")
    zettle_oauth_url: str = Field(
        default="https://oauth.zettle.com", description="Zettle OAuth base URL."
    )
    zettle_secondary_oauth_url: str | None = Field(
        default=None, description="Zettle's secondary OAuth endpoint, probed beside it."
    )
    zettle_pusher_url: str = Field(
        default="https://pusher.izettle.com", description="Zettle Pusher API base URL."
    )
    zettle_contact_email: str | None = Field(
        default=None, description="Contact e-mail of Zettle subscriptions re-created."
    )
    webhook_url: str | None = Field(
        default=None,
        description="Where providers deliver webhooks (default: the gateway's URL + /webhooks).",
    )
    square_webhook_events: list[str] = Field(
        default_factory=lambda: list(SQUARE_EVENTS),
        description="Square event types an enabled subscription must cover.",
    )
    shopify_webhook_topics: list[str] = Field(
        default_factory=lambda: list(SHOPIFY_TOPICS),
        description="Shopify topics a webhook must cover.",
    )
    zettle_webhook_events: list[str] = Field(
        default_factory=lambda: list(ZETTLE_EVENTS),
        description="Zettle event names an active subscription must cover.",
    )
    merchant_connections_query: str = Field(
        default=MERCHANT_CONNECTIONS_QUERY,
        description="SQL on the platform database giving the active merchant connections.",
    )
    merchant_concurrency: int = Field(
        default=10, ge=1, le=100, description="Merchant checks in flight per provider."
    )
    timeout_seconds: float = Field(default=20.0, gt=0, description="Seconds per request.")

    def configured(self) -> dict[str, bool]:
        """Which providers have credentials."""
        return {
            "square": self.square_access_token is not None,
            "shopify": bool(self.shopify_shop_domain and self.shopify_access_token),
            "zettle": bool(self.zettle_client_id and self.zettle_api_key),
        }

    def shopify_base(self) -> str:
        """`https://feedback.myshopify.com`, or the configured override."""
        if self.shopify_api_url:
            return self.shopify_api_url.rstrip("/")
        domain = self.shopify_shop_domain or ""
        if "." not in domain:
            domain = f"{domain}.myshopify.com"
        return f"https://{domain}"
