"""Slack: a message to the alerts channel through an incoming webhook.

The webhook URL is the credential (anyone holding it can post), so it never appears in
an error or a repr; errors name "the Slack webhook" and its host only.

Protocol (https://api.slack.com/messaging/webhooks): POST a JSON message with a
fallback `text` and Block Kit `blocks`; Slack answers 200 `ok`, or a plain-text error
code (`invalid_payload` 400, `action_prohibited` 403, `no_service` /
`channel_not_found` 404, `channel_is_archived` 410), or 429 with Retry-After.
"""

from __future__ import annotations

import re
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
    post,
    status_error,
    trim,
)

HEADER_LIMIT: Final = 150  # Block Kit: header text
SECTION_LIMIT: Final = 3000  # Block Kit: section text
FIELD_LIMIT: Final = 2000  # Block Kit: one section field
MAX_FIELDS: Final = 10  # Block Kit: fields of one section
EMOJI: Final = {
    "critical": ":red_circle:",
    "high": ":large_orange_circle:",
    "medium": ":large_yellow_circle:",
    "low": ":large_blue_circle:",
    "acknowledge": ":eyes:",
    "resolve": ":white_check_mark:",
}
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")


class SlackWebhookChannel:
    """Posts alerts to a Slack channel through an incoming webhook.

    Args:
        webhook_url: The webhook's `https://hooks.slack.com/services/...` URL (a secret).
        timeout: Seconds to wait for Slack to connect and answer.

    Raises:
        ConfigError: the URL is not an http(s) URL (the message does not repeat it).
    """

    name: str = "slack"

    def __init__(self, webhook_url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._url = webhook_url.strip()
        self._endpoint = endpoint_of(self._url, what="the Slack webhook", channel=self.name)
        self.timeout = check_timeout(self.name, timeout)

    def __repr__(self) -> str:
        return f"SlackWebhookChannel(endpoint={self._endpoint!r}, timeout={self.timeout:g})"

    def payload(self, message: Message, mentions: Sequence[str] = ()) -> dict[str, Any]:
        """The JSON body Slack receives for `message`, calling out `mentions`.

        `text` is the one-line fallback (notifications, screen readers); `blocks` hold a
        header, the body (with details as fields), a context line (source, dedup key,
        time in the reader's own time zone) and, when there are any, the links.
        """
        headline = f"{message.label} {message.title}"
        if message.action == "resolve":
            headline = f"Resolved: {headline}"
        elif message.action == "acknowledge":
            headline = f"Acknowledged: {headline}"
        tags = " ".join(mentions)
        text = f"{headline} {tags}" if tags else headline
        emoji = EMOJI[message.action if message.action != "trigger" else message.severity]

        body = escape(message.body.strip()) or "_No further details._"
        if tags:
            body = f"{tags}\n{body}"
        section: dict[str, Any] = {
            "type": "section",
            "text": {"type": "mrkdwn", "text": trim(body, SECTION_LIMIT)},
        }
        fields = _detail_fields(message)
        if fields:
            section["fields"] = fields

        epoch = int(message.timestamp.timestamp())
        iso = message.timestamp.isoformat(timespec="seconds")
        blocks: list[dict[str, Any]] = [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "text": trim(f"{emoji} {headline}", HEADER_LIMIT),
                    "emoji": True,
                },
            },
            section,
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"*Source:* {escape(message.source)}"},
                    {"type": "mrkdwn", "text": f"*Dedup key:* `{escape(message.dedup_key)}`"},
                    {
                        "type": "mrkdwn",
                        "text": f"<!date^{epoch}^{{date_short_pretty}} {{time_secs}}|{iso}>",
                    },
                ],
            },
        ]
        if message.links:
            links = " · ".join(f"<{_href(href)}|{escape(text)}>" for text, href in message.links)
            blocks.append(
                {"type": "section", "text": {"type": "mrkdwn", "text": trim(links, SECTION_LIMIT)}}
            )
        return {"text": text, "blocks": blocks}

    def send(self, message: Message, recipients: Sequence[str] | None = None) -> Delivery:
        """Post `message`; `recipients` (Slack handles or ids) are mentioned in it.

        The message's own `mention` is called out too.

        Raises:
            ChannelError: Slack refused the message (not transient: 4xx such as
                `no_service`; transient: 429, 5xx, timeouts, connection failures).
        """
        wanted = [recipients] if isinstance(recipients, str) else list(recipients or ())
        if message.mention:
            wanted.insert(0, message.mention)
        mentions = tuple(dict.fromkeys(m for m in (slack_mention(w) for w in wanted) if m))
        with http_client(self.timeout) as client:
            response = post(
                self.name,
                "the Slack webhook",
                self._url,
                timeout=self.timeout,
                client=client,
                json_body=self.payload(message, mentions),
            )
        if not response.is_success:
            raise status_error(
                self.name, "the Slack webhook", response, response.text, secrets=[self._url]
            )
        return Delivery(self.name, mentions, response.status_code, None)


def escape(text: str) -> str:
    """Text safe inside Slack mrkdwn: `&`, `<` and `>` as Slack's HTML entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_mention(who: str) -> str:
    """Slack's mention syntax for a handle or id.

    `U024BE7LH` (user) becomes `<@U024BE7LH>`, `S0614TZR7` (user group)
    `<!subteam^S0614TZR7>`, `@here`/`@channel` `<!here>`/`<!channel>`; a name such as
    `@eng-lead` stays as written (webhooks can't resolve names to ids).
    """
    who = who.strip()
    if not who or who.startswith("<"):
        return who
    bare = who.lstrip("@")
    if bare in ("here", "channel", "everyone"):
        return f"<!{bare}>"
    if _USER_ID.match(bare):
        return f"<@{bare}>"
    if _GROUP_ID.match(bare):
        return f"<!subteam^{bare}>"
    return "@" + escape(bare)


def _href(url: str) -> str:
    # `|` and `>` end a Slack link; percent-encoding keeps the URL intact.
    return url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C").replace(" ", "%20")


def _detail_fields(message: Message) -> list[dict[str, str]]:
    items = [(str(k), v) for k, v in message.details.items()]
    if len(items) > MAX_FIELDS:
        shown = items[: MAX_FIELDS - 1]
        extra = [("…", f"{len(items) - len(shown)} more details")]
        items = shown + extra
    return [
        {"type": "mrkdwn", "text": trim(f"*{escape(k)}*\n{escape(str(v))}", FIELD_LIMIT)}
        for k, v in items
    ]


class SlackAlerts(Block):
    """The Slack alerts channel (#ai-feedback-swedish-alerts) through an incoming webhook.

    Example:
        Post an alert with the block saved by `feedback-ops up`:
        ```python
        from blocks.channels.slack import SlackAlerts

        alerts = SlackAlerts.load("BLOCK_NAME")
        alerts.channel().send(message)
        ```
    """

    _block_type_name: ClassVar[str] = "Feedback Ops Slack Alerts"
    _block_type_slug: ClassVar[str] = "feedback-ops-slack"
    _description: ClassVar[str] = "Slack incoming webhook for the platform's alert channel."
    _documentation_url: ClassVar[HttpUrl] = HttpUrl("https://api.slack.com/messaging/webhooks")

    webhook_url: SecretStr = Field(
        description="Incoming webhook URL, https://hooks.slack.com/services/...; a secret.",
    )
    timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0, description=TIMEOUT_DESCRIPTION)

    def channel(self) -> SlackWebhookChannel:
        """The Slack client for this webhook."""
        return SlackWebhookChannel(self.webhook_url.get_secret_value(), timeout=self.timeout)


__all__ = ["SlackAlerts", "SlackWebhookChannel", "escape", "slack_mention"]
