"""Whether each provider's webhook subscriptions deliver what the platform needs, where
it needs it; and the re-creation of a Zettle subscription that Zettle deleted.

A provider's expected events (block fields `square_webhook_events`,
`shopify_webhook_topics`, `zettle_webhook_events`) must each be covered by a
subscription that is enabled (Square `enabled`, Zettle `status` ACTIVE; Shopify has no
disabled webhooks) and delivers under the platform's webhook URL (`webhook_url`, by
default the gateway's URL + `/webhooks`). Zettle deletes a subscription after about
72 hours of failed deliveries; it is the one provider whose subscriptions the sweep
creates again, as it is the one whose loss is silent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from blocks.channels.base import ChannelError
from blocks.pos import PosProviders, reveal
from blocks.pos.calls import post_json


@dataclass(frozen=True)
class SubscriptionCheck:
    """What one provider's subscriptions cover, against what is expected.

    Attributes:
        provider: square, shopify or zettle.
        expected: The events the platform needs.
        missing: Expected events no enabled subscription under the URL delivers.
        disabled: Subscriptions (ids) that would deliver an expected event but are off.
        elsewhere: Subscriptions (ids) for an expected event that deliver to another URL.
        subscriptions: How many the provider reported.
    """

    provider: str
    expected: tuple[str, ...]
    missing: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()
    elsewhere: tuple[str, ...] = ()
    subscriptions: int = 0

    @property
    def ok(self) -> bool:
        """Every expected event delivered where it should be."""
        return not self.missing

    def reason(self) -> str | None:
        """One line for the artifact and the alert; None when all is well."""
        parts = []
        if self.missing:
            parts.append(f"no enabled subscription for {', '.join(self.missing)}")
        if self.disabled:
            parts.append(f"disabled: {', '.join(self.disabled)}")
        if self.elsewhere:
            parts.append(f"delivering elsewhere: {', '.join(self.elsewhere)}")
        return f"{self.provider}: " + "; ".join(parts) if parts else None


def webhook_base(providers: PosProviders, gateway_url: str | None) -> str | None:
    """Where the providers must deliver: the block's `webhook_url`, else the gateway's
    URL + `/webhooks`; None when neither is known."""
    if providers.webhook_url:
        return providers.webhook_url.rstrip("/")
    if gateway_url:
        return f"{gateway_url.rstrip('/')}/webhooks"
    return None


def expected_events(providers: PosProviders, provider: str) -> tuple[str, ...]:
    """The events the platform needs from `provider`."""
    return tuple(
        {
            "square": providers.square_webhook_events,
            "shopify": providers.shopify_webhook_topics,
            "zettle": providers.zettle_webhook_events,
        }[provider]
    )


def _shape(provider: str, subscription: dict[str, Any]) -> tuple[str, list[str], str, bool]:
    """(id, events, url, enabled) of one subscription in its provider's own shape."""
    if provider == "square":
        return (
            str(subscription.get("id")),
            list(subscription.get("event_types") or []),
            str(subscription.get("notification_url") or ""),
            bool(subscription.get("enabled")),
        )
    if provider == "shopify":
        return (
            str(subscription.get("id")),
            [str(subscription.get("topic"))],
            str(subscription.get("address") or ""),
            True,
        )
    return (
        str(subscription.get("uuid")),
        list(subscription.get("eventNames") or []),
        str(subscription.get("destination") or ""),
        subscription.get("status") == "ACTIVE",
    )


def check_subscriptions(
    provider: str, subscriptions: list[dict[str, Any]], expected: tuple[str, ...], base: str
) -> SubscriptionCheck:
    """Which of `expected` the `subscriptions` deliver under `base`, and what is amiss."""
    covered: set[str] = set()
    disabled: list[str] = []
    elsewhere: list[str] = []
    for subscription in subscriptions:
        ident, events, url, enabled = _shape(provider, subscription)
        if not set(events) & set(expected):
            continue
        if not (url == base or url.startswith(f"{base}/")):
            elsewhere.append(ident)
        elif not enabled:
            disabled.append(ident)
        else:
            covered.update(events)
    return SubscriptionCheck(
        provider,
        expected,
        tuple(e for e in expected if e not in covered),
        tuple(disabled),
        tuple(elsewhere),
        len(subscriptions),
    )


@dataclass(frozen=True)
class Created:
    """A Zettle subscription the sweep created; `signing_key` is a secret."""

    uuid: str
    events: tuple[str, ...]
    destination: str
    signing_key: str = field(repr=False)


def create_zettle_subscription(
    providers: PosProviders, access_token: str, events: tuple[str, ...], base: str
) -> Created:
    """`POST /organizations/self/subscriptions` for `events`, delivering to
    `{base}/zettle`, with a new UUIDv1 (Zettle wants the client to choose it).

    Raises:
        ChannelError: Zettle refused or did not answer, or answered without the
            signing key (without it no delivery can be verified); no secret in it.
    """
    pusher = providers.zettle_pusher_url.rstrip("/")
    ident = str(uuid.uuid1())
    destination = f"{base}/zettle"
    answer = post_json(
        pusher,
        "/organizations/self/subscriptions",
        provider="zettle",
        what="Zettle POST /organizations/self/subscriptions",
        timeout=providers.timeout_seconds,
        secrets=[access_token, reveal(providers.zettle_api_key)],
        json={
            "uuid": ident,
            "transportName": "WEBHOOK",
            "eventNames": list(events),
            "destination": destination,
            "contactEmail": providers.zettle_contact_email or "",
        },
        headers={"Authorization": f"Bearer {access_token}"},
    )
    key = answer.get("signingKey")
    if not key:
        raise ChannelError(
            "zettle", "Zettle POST /organizations/self/subscriptions answered without a signingKey"
        )
    return Created(str(answer.get("uuid") or ident), events, destination, str(key))
