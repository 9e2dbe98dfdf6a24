"""The POS providers: the block (where Square, Shopify and Zettle are, how to log in) and
the clients that read what each has configured (`webhooks`) and how each answers
(`probes`)."""

from __future__ import annotations

from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, SecretStr

PROVIDERS = ("square", "shopify", "zettle")
"""The POS providers the platform integrates, by the names its gateway uses."""


def reveal(secret: SecretStr | None) -> str:
    """A credential's text for a request header or form; "" when it is not set."""
    return secret.get_secret_value() if secret is not None else ""


class PosProviders(Block):
    """Credentials for the POS providers' APIs, to read what each has configured.

    A provider without credentials is not configured: flows that read providers say
    so and skip it. The API URLs default to the providers' production endpoints.

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
    square_version: str = Field(default="2024-10-17", description="Square-Version header.")
    shopify_shop_domain: str | None = Field(
        default=None, description="The shop, e.g. feedback.myshopify.com."
    )
    shopify_access_token: SecretStr | None = Field(default=None, description="Admin API token.")
    shopify_api_url: str | None = Field(
        default=None, description="Shopify API base URL (default: https://<shop domain>)."
    )
    shopify_api_version: str = Field(default="2024-10", description="Admin API version.")
    zettle_client_id: str | None = Field(default=None, description="Zettle OAuth client id.")
    zettle_api_key: SecretStr | None = Field(default=None, description="Zettle API key.")
    zettle_oauth_url: str = Field(
        default="https://oauth.zettle.com", description="Zettle OAuth base URL."
    )
    zettle_pusher_url: str = Field(
        default="https://pusher.izettle.com", description="Zettle Pusher API base URL."
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
