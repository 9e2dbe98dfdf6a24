"""PagerDuty: incidents through the Events API v2, for after-hours critical alerts.

Protocol (https://developer.pagerduty.com/docs/events-api-v2/trigger-events/): POST
JSON to `/v2/enqueue`. A trigger carries the routing key, the dedup key and a payload
(summary, source, severity, timestamp, custom details) plus links; acknowledge and
resolve carry only the routing key, the action and the dedup key. PagerDuty answers 202
`{"status": "success", "message": "Event processed", "dedup_key": ...}`, 400
`{"status": "invalid event", "message": ..., "errors": [...]}`, 429 when throttled and
5xx when it has trouble (both worth retrying).

The routing key is a secret: errors name it by its last four characters at most.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Final

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, SecretStr

from blocks.channels.base import (
    DEFAULT_TIMEOUT,
    TIMEOUT_DESCRIPTION,
    Delivery,
    Message,
    check_timeout,
    endpoint_of,
    http_client,
    json_object,
    key_hint,
    post,
    status_error,
    trim,
)
from feedback_ops.errors import ConfigError

EVENTS_URL: Final = "https://events.pagerduty.com/v2/enqueue"
EU_EVENTS_URL: Final = "https://events.eu.pagerduty.com/v2/enqueue"
SUMMARY_LIMIT: Final = 1024
CLIENT: Final = "feedback-ops"
# PagerDuty knows four severities; the runbook's "high" is PagerDuty's "error".
SEVERITY: Final = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}


class PagerDutyEventsChannel:
    """Triggers, acknowledges and resolves PagerDuty alerts by dedup key.

    Args:
        routing_key: The 32-character integration key of an Events API v2 integration.
        events_url: The enqueue endpoint; `EU_EVENTS_URL` for an account in the EU
            service region.
        timeout: Seconds to wait for PagerDuty to connect and answer.

    Raises:
        ConfigError: the routing key is empty or the URL is not an http(s) URL.
    """

    name: str = "pagerduty"

    def __init__(
        self,
        routing_key: str,
        events_url: str = EVENTS_URL,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._routing_key = routing_key.strip()
        if not self._routing_key:
            raise ConfigError("pagerduty: the routing key is empty")
        self.events_url = events_url.strip()
        self._what = f"PagerDuty (routing key {key_hint(self._routing_key)})"
        endpoint_of(self.events_url, what="the PagerDuty Events API", channel=self.name)
        self.timeout = check_timeout(self.name, timeout)

    def __repr__(self) -> str:
        return (
            f"PagerDutyEventsChannel(routing_key={key_hint(self._routing_key)!r}, "
            f"events_url={self.events_url!r}, timeout={self.timeout:g})"
        )

    def event(self, message: Message) -> dict[str, Any]:
        """The Events API v2 body for `message` (trigger, acknowledge or resolve).

        The summary is the title; the body, when there is one, leads the custom details
        so the responder reads it in the alert.
        """
        if message.action != "trigger":
            return {
                "routing_key": self._routing_key,
                "event_action": message.action,
                "dedup_key": message.dedup_key,
            }
        details: dict[str, Any] = {}
        if message.body.strip():
            details["body"] = message.body
        details.update({str(k): v for k, v in message.details.items()})
        return {
            "routing_key": self._routing_key,
            "event_action": "trigger",
            "dedup_key": message.dedup_key,
            "payload": {
                "summary": trim(message.title, SUMMARY_LIMIT),
                "source": message.source,
                "severity": SEVERITY[message.severity],
                "timestamp": message.timestamp.isoformat(),
                "custom_details": details,
            },
            "links": [{"href": href, "text": text} for text, href in message.links],
            "client": CLIENT,
        }

    def send(self, message: Message, recipients: Sequence[str] | None = None) -> Delivery:
        """Send the event; `recipients` is ignored (PagerDuty's escalation policy decides).

        Raises:
            ChannelError: PagerDuty refused the event (not transient: 400 invalid event,
                401-404; transient: 429, 5xx, timeouts, connection failures).
        """
        with http_client(self.timeout) as client:
            response = post(
                self.name,
                self._what,
                self.events_url,
                timeout=self.timeout,
                client=client,
                json_body=self.event(message),
            )
        if not response.is_success:
            raise status_error(
                self.name,
                self._what,
                response,
                _error_text(response.text),
                secrets=[self._routing_key],
            )
        echoed = json_object(response.text).get("dedup_key")
        return Delivery(
            self.name,
            (),
            response.status_code,
            echoed if isinstance(echoed, str) and echoed else message.dedup_key,
        )


def _error_text(text: str) -> str:
    """`invalid event: Event object is invalid; <error>; ...` from PagerDuty's JSON."""
    data = json_object(text)
    if not data:
        return text
    parts = [str(data[k]) for k in ("status", "message") if data.get(k)]
    head = ": ".join(parts)
    errors = data.get("errors")
    if isinstance(errors, list) and errors:
        head = "; ".join([head, *map(str, errors)]) if head else "; ".join(map(str, errors))
    return head or text


class PagerDutyAlerts(Block):
    """PagerDuty incidents (after-hours critical alerts) through the Events API v2.

    Example:
        Page the on-call engineer with the block saved by `feedback-ops up`:
        ```python
        from blocks.channels.pagerduty import PagerDutyAlerts

        pagerduty = PagerDutyAlerts.load("BLOCK_NAME")
        pagerduty.channel().send(message)
        ```
    """

    _block_type_name: ClassVar[str] = "Feedback Ops PagerDuty Alerts"
    _block_type_slug: ClassVar[str] = "feedback-ops-pagerduty"
    _description: ClassVar[str] = "PagerDuty Events API v2 integration that pages on-call."
    _documentation_url: ClassVar[HttpUrl] = HttpUrl(
        "https://developer.pagerduty.com/docs/events-api-v2/trigger-events/"
    )

    routing_key: SecretStr = Field(
        description="Integration key of the service's Events API v2 integration; a secret."
    )
    events_url: str = Field(
        default=EVENTS_URL,
        description="Events API endpoint; https://events.eu.pagerduty.com/v2/enqueue in the EU.",
    )
    timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0, description=TIMEOUT_DESCRIPTION)

    def channel(self) -> PagerDutyEventsChannel:
        """The PagerDuty client for this integration."""
        return PagerDutyEventsChannel(
            self.routing_key.get_secret_value(), events_url=self.events_url, timeout=self.timeout
        )


__all__ = ["PagerDutyAlerts", "EU_EVENTS_URL", "EVENTS_URL", "SEVERITY", "PagerDutyEventsChannel"]
