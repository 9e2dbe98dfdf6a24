"""What the POS health sweep tells people, and how urgently (`policy.pos_health`).

Each condition has one dedup key, so a provider down for an hour is one alert, not
twelve, and it is resolved by the first sweep that finds it cleared. A failure to
deliver never stops the sweep: the alert stays stored for the escalation sweep.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import get_run_logger

from blocks.pos.subscriptions import Created
from flows.alert_steps import AlertTargets, Conditions
from policy import Severity
from policy.pos_health import MERCHANT_ESCALATION_SHARE, Move, provider_down_severity

SECTION = "POS Provider Connection Issues"
TROUBLESHOOTING = "POS Integration Troubleshooting"


class PosAlerts(Conditions):
    """The alerts of one sweep at `at`, raised to `targets`; `raised` lists their keys."""

    def __init__(self, at: datetime, targets: AlertTargets) -> None:
        super().__init__(at, targets, "pos-")

    def provider_down(self, provider: str, reason: str, checks: dict[str, Any]) -> None:
        """The provider's traffic has nowhere healthy to go: the runbook's
        POS_PROVIDER_DOWN_BUSINESS_HOURS, critical in business hours."""
        severity = provider_down_severity(self.at)
        self._raise(
            f"pos-provider-down:{provider}",
            "pos-provider-down",
            severity,
            f"POS provider {provider} is down ({reason})",
            {"provider": provider, "checks": checks},
        )

    def provider_fine(self, provider: str) -> None:
        """The provider works again (or its traffic is on a healthy secondary)."""
        self._clear(f"pos-provider-down:{provider}")

    def moved(self, provider: str, move: Move, reason: str, checks: dict[str, Any]) -> None:
        """A failover or failback the gateway accepted: with its reason and the checks."""
        severity = provider_down_severity(self.at) if move is Move.FAILOVER else Severity.LOW
        target = "secondary" if move is Move.FAILOVER else "primary"
        self._raise(
            f"pos-{move.value}:{provider}:{self.at:%Y%m%dT%H%M}",
            f"pos-{move.value}",
            severity,
            f"POS provider {provider}: {move.value} to its {target} endpoint ({reason})",
            {"provider": provider, "move": move.value, "reason": reason, "checks": checks},
        )

    def move_failed(
        self, provider: str, move: Move, reason: str, error: str, checks: dict[str, Any]
    ) -> None:
        """The gateway did not take a failover or failback the sweep decided on."""
        self._raise(
            f"pos-move-failed:{provider}",
            "pos-move-failed",
            Severity.CRITICAL if move is Move.FAILOVER else Severity.HIGH,
            f"POS provider {provider}: {move.value} through the gateway failed: {error}",
            {"provider": provider, "move": move.value, "reason": reason, "checks": checks},
        )

    def token_failed(self, provider: str, summary: str, *, expired: bool) -> None:
        """A platform token could not be renewed; critical once it has expired."""
        self._raise(
            f"pos-token:{provider}",
            "pos-token-expired" if expired else "pos-token-refresh-failed",
            Severity.CRITICAL if expired else Severity.HIGH,
            summary,
            {"provider": provider, "expired": expired},
            section=TROUBLESHOOTING,
        )

    def token_refreshed(
        self, provider: str, before: datetime | None, after: datetime | None
    ) -> None:
        """A refresh worked: any alert about the token is over."""
        get_run_logger().info(
            "%s token refreshed: it expired %s, the new one %s", provider, before, after
        )
        self.token_fine(provider)

    def token_fine(self, provider: str) -> None:
        """The provider's platform token is good."""
        self._clear(f"pos-token:{provider}")

    def subscriptions_wrong(self, provider: str, reason: str, detail: dict[str, Any]) -> None:
        """Expected webhooks are missing, disabled or delivered elsewhere."""
        self._raise(
            f"pos-subscriptions:{provider}",
            "pos-webhook-subscriptions",
            Severity.HIGH,
            f"Webhook subscriptions of {provider}: {reason}",
            {"provider": provider, **detail},
            section=TROUBLESHOOTING,
        )

    def subscriptions_fine(self, provider: str) -> None:
        """Every expected webhook is delivered where it should be."""
        self._clear(f"pos-subscriptions:{provider}")

    def zettle_recreated(self, created: Created, reason: str) -> None:
        """Zettle had deleted a subscription; the sweep created it again."""
        self._raise(
            f"pos-subscription-recreated:zettle:{created.uuid}",
            "pos-zettle-subscription-recreated",
            Severity.MEDIUM,
            f"Zettle had deleted a webhook subscription ({reason}); re-created as "
            f"{created.uuid} for {', '.join(created.events)}, new signing key stored",
            {"uuid": created.uuid, "destination": created.destination, "events": created.events},
            section=TROUBLESHOOTING,
        )
        self._clear("pos-subscriptions:zettle")

    def merchants_failing(self, failing: int, businesses: int, listed: list[Any]) -> None:
        """More than 25 % of the businesses with connections fail: the runbook's
        escalation trigger."""
        self._raise(
            "pos-merchant-failures",
            "pos-integration-failures-over-25-percent",
            Severity.HIGH,
            f"POS integration failures affect {failing} of {businesses} businesses "
            f"(over {MERCHANT_ESCALATION_SHARE:.0%})",
            {"failing": failing, "businesses": businesses, "first": listed[:20]},
            section="Escalation Procedures",
        )

    def merchants_fine(self) -> None:
        """Merchant failures are under the escalation share."""
        self._clear("pos-merchant-failures")

    def _raise(
        self,
        key: str,
        name: str,
        severity: Severity,
        summary: str,
        details: dict[str, Any],
        section: str = SECTION,
    ) -> None:
        super()._raise(key, name, severity, summary, details, section)
