"""Tasks on the POS providers' own APIs (Square, Shopify, Zettle)."""

from __future__ import annotations

from typing import Any

from blocks.pos import PosProviders
from blocks.pos.webhooks import all_subscriptions
from tasks import QUICK, step


@step("read-pos-webhooks", limit=QUICK)
def read_pos_webhooks(providers: PosProviders) -> dict[str, dict[str, Any]]:
    """Each provider's webhook subscriptions as the provider reports them; a provider
    without credentials is recorded as not configured."""
    return dict(all_subscriptions(providers))
