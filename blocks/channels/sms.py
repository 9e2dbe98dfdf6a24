"""SMS: critical alerts to the on-call phones during business hours, via 46elks or Twilio.

46elks (Swedish, https://46elks.com/docs/send-sms): POST form fields `from`, `to`,
`message` to `/a1/sms` with HTTP basic auth (API username and password); 200 with a JSON
SMS object (`id`, `status: created`, ...). Twilio
(https://www.twilio.com/docs/messaging/api/message-resource): POST form fields `To`,
`From`, `Body` to `/2010-04-01/Accounts/{AccountSid}/Messages.json` with basic auth
(account SID, auth token); 201 with a JSON message resource (`sid`, ...).

Both take one recipient per request. Every recipient is tried even when one fails; the
error afterwards names the failed numbers (masked but for the last three digits).

The text fits three SMS parts: GSM-7 characters (Swedish letters included) allow 459,
anything else (emoji, CJK) switches the whole text to UCS-2, which allows 201; common
typographic punctuation is replaced by its GSM-7 look-alike to avoid that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Final, Literal
from urllib.parse import quote

import httpx
from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, SecretStr

from blocks.channels.base import (
    DEFAULT_TIMEOUT,
    TIMEOUT_DESCRIPTION,
    ChannelError,
    Delivery,
    Message,
    check_timeout,
    endpoint_of,
    http_client,
    json_object,
    mask_phone,
    one_line,
    post,
    recipients_of,
    scrub,
    status_error,
)
from feedback_ops.errors import ConfigError

ELKS_URL: Final = "https://api.46elks.com/a1/sms"
TWILIO_API_BASE: Final = "https://api.twilio.com"
PARTS: Final = 3
GSM_PART: Final = 153  # septets per part of a multi-part GSM-7 message
UCS2_PART: Final = 67  # UTF-16 units per part of a multi-part UCS-2 message

_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = set("^{}\\[~]|€\f")  # two septets each (escape + character)
_GSM_FRIENDLY = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2026": "...",
        "\u00a0": " ",
        "\u2022": "*",
    }
)


def sms_text(message: Message) -> str:
    """`[HIGH] title - body` on one line, cut to fit three SMS parts.

    Follow-ups read `[RESOLVED] title ...` and `[ACKNOWLEDGED] title ...`.
    """
    head = f"{message.label} {message.title}"
    body = " ".join(message.body.split())
    text = f"{head} - {body}" if body else head
    text = text.translate(_GSM_FRIENDLY)
    return fit_parts(text)


def fit_parts(text: str, parts: int = PARTS) -> str:
    """`text` cut (ending in `...`) so that it is sent as at most `parts` SMS parts."""
    if _is_gsm(text):
        limit, size = parts * GSM_PART, _gsm_septets
    else:
        limit, size = parts * UCS2_PART, _utf16_units
    if size(text) <= limit:
        return text
    cut = text
    while cut and size(cut + "...") > limit:
        cut = cut[:-1]
    return cut.rstrip() + "..."


def _is_gsm(text: str) -> bool:
    return all(ch in _GSM_BASIC or ch in _GSM_EXTENDED for ch in text)


def _gsm_septets(text: str) -> int:
    return sum(2 if ch in _GSM_EXTENDED else 1 for ch in text)


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class _SmsChannel:
    """One request per recipient, every recipient tried; the providers differ below."""

    name: str = "sms"
    provider: str = "SMS provider"

    def __init__(self, sender: str, recipients: Sequence[str], timeout: float) -> None:
        self.sender = sender.strip()
        if not self.sender:
            raise ConfigError(f"sms: the {self.provider} sender (from) is empty")
        if isinstance(recipients, str):
            recipients = [recipients]
        self.recipients = tuple(r.strip() for r in recipients if r.strip())
        self.timeout = check_timeout(self.name, timeout)

    def send(self, message: Message, recipients: Sequence[str] | None = None) -> Delivery:
        """Text `message` to every recipient (`recipients` replaces the configured list).

        Raises:
            ChannelError: the credentials were rejected (at once, not transient), or some
                recipients could not be reached: raised after trying all of them, naming
                the failed ones; transient only if every failure was.
        """
        targets = recipients_of(self.name, recipients, self.recipients)
        text = sms_text(message)
        sent: list[tuple[str, str | None, int]] = []
        failed: list[tuple[str, ChannelError]] = []
        with http_client(self.timeout) as client:
            for index, number in enumerate(targets):
                try:
                    provider_id, status = self._send_one(client, number, text)
                except _CredentialsRejected as exc:
                    raise ChannelError(
                        self.name,
                        exc.reason,
                        status=exc.status,
                        failed_recipients=targets[index:] + tuple(n for n, _ in failed),
                        delivery=self._delivery(sent),
                    ) from None
                except ChannelError as exc:
                    failed.append((number, exc))
                else:
                    sent.append((number, provider_id, status))
        if failed:
            raise self._failure(failed, sent, len(targets))
        delivery = self._delivery(sent)
        assert delivery is not None  # at least one recipient, none failed
        return delivery

    def _send_one(self, client: httpx.Client, number: str, text: str) -> tuple[str | None, int]:
        raise NotImplementedError

    def _delivery(self, sent: list[tuple[str, str | None, int]]) -> Delivery | None:
        if not sent:
            return None
        ids = [i for _, i, _ in sent if i]
        return Delivery(
            self.name,
            tuple(n for n, _, _ in sent),
            sent[-1][2],
            ",".join(ids) if ids else None,
        )

    def _failure(
        self,
        failed: list[tuple[str, ChannelError]],
        sent: list[tuple[str, str | None, int]],
        total: int,
    ) -> ChannelError:
        described = "; ".join(f"{mask_phone(n)} ({e.reason})" for n, e in failed)
        reason = f"{self.provider} could not send to {len(failed)} of {total} recipients: "
        reason += described
        if sent:
            reason += f"; sent to {', '.join(mask_phone(n) for n, _, _ in sent)}"
        statuses = {e.status for _, e in failed}
        waits = [e.retry_after for _, e in failed if e.retry_after is not None]
        return ChannelError(
            self.name,
            reason,
            transient=all(e.transient for _, e in failed),
            status=statuses.pop() if len(statuses) == 1 else None,
            retry_after=max(waits) if waits else None,
            failed_recipients=[n for n, _ in failed],
            delivery=self._delivery(sent),
        )


class _CredentialsRejected(Exception):
    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class FortySixElksChannel(_SmsChannel):
    """Sends SMS through 46elks, the Swedish SMS gateway.

    Args:
        username: The API username (`u...`) from the 46elks dashboard.
        password: The API password (a secret).
        sender: A text sender id (up to 11 letters and digits) or an E.164 number.
        recipients: Default recipients, E.164 numbers such as `+46701234567`.
        api_url: The send-SMS endpoint.
        timeout: Seconds to wait for 46elks to connect and answer, per request.

    Raises:
        ConfigError: credentials or sender are empty, or the URL is not http(s).
    """

    provider = "46elks"

    def __init__(
        self,
        username: str,
        password: str,
        sender: str,
        recipients: Sequence[str],
        api_url: str = ELKS_URL,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(sender, recipients, timeout)
        if not username.strip() or not password:
            raise ConfigError("sms: the 46elks API username and password are required")
        self.username = username.strip()
        self._password = password
        self.api_url = api_url.strip()
        self._endpoint = endpoint_of(self.api_url, what="the 46elks API", channel=self.name)

    def __repr__(self) -> str:
        return (
            f"FortySixElksChannel(username={self.username!r}, sender={self.sender!r}, "
            f"recipients={len(self.recipients)}, api_url={self.api_url!r})"
        )

    def _send_one(self, client: httpx.Client, number: str, text: str) -> tuple[str | None, int]:
        response = post(
            self.name,
            "46elks",
            self.api_url,
            timeout=self.timeout,
            client=client,
            form={"from": self.sender, "to": number, "message": text},
            auth=(self.username, self._password),
        )
        if response.status_code == 401:
            raise _CredentialsRejected("46elks rejected the API credentials (HTTP 401)", 401)
        if not response.is_success:
            raise status_error(
                self.name, "46elks", response, response.text, secrets=[self._password]
            )
        sms_id = json_object(response.text).get("id")
        return (str(sms_id) if sms_id else None), response.status_code


class TwilioChannel(_SmsChannel):
    """Sends SMS through Twilio's Programmable Messaging API.

    Args:
        account_sid: The account SID (`AC...`).
        auth_token: The auth token (a secret).
        sender: A Twilio number in E.164 form, or an alphanumeric sender id.
        recipients: Default recipients, E.164 numbers.
        api_base: The API's base URL.
        timeout: Seconds to wait for Twilio to connect and answer, per request.

    Raises:
        ConfigError: credentials or sender are empty, or the URL is not http(s).
    """

    provider = "Twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        sender: str,
        recipients: Sequence[str],
        api_base: str = TWILIO_API_BASE,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(sender, recipients, timeout)
        if not account_sid.strip() or not auth_token:
            raise ConfigError("sms: the Twilio account SID and auth token are required")
        self._account_sid = account_sid.strip()
        self._auth_token = auth_token
        self.api_base = api_base.strip().rstrip("/")
        endpoint_of(self.api_base, what="the Twilio API", channel=self.name)
        self.messages_url = (
            f"{self.api_base}/2010-04-01/Accounts/{quote(self._account_sid, safe='')}/Messages.json"
        )

    def __repr__(self) -> str:
        return (
            f"TwilioChannel(sender={self.sender!r}, recipients={len(self.recipients)}, "
            f"api_base={self.api_base!r})"
        )

    def _send_one(self, client: httpx.Client, number: str, text: str) -> tuple[str | None, int]:
        response = post(
            self.name,
            "Twilio",
            self.messages_url,
            timeout=self.timeout,
            client=client,
            form={"To": number, "From": self.sender, "Body": text},
            auth=(self._account_sid, self._auth_token),
        )
        secrets = [self._auth_token, self._account_sid]
        if response.status_code == 401:
            detail = one_line(scrub(_twilio_error(response.text), secrets), 120)
            raise _CredentialsRejected(
                f"Twilio rejected the account SID and auth token (HTTP 401: {detail})", 401
            )
        if not response.is_success:
            raise status_error(
                self.name, "Twilio", response, _twilio_error(response.text), secrets=secrets
            )
        sid = json_object(response.text).get("sid")
        return (str(sid) if sid else None), response.status_code


def _twilio_error(text: str) -> str:
    """`message (Twilio error 21211)` from Twilio's JSON error body."""
    data = json_object(text)
    message = data.get("message")
    if not message:
        return text
    code = data.get("code")
    return f"{message} (Twilio error {code})" if code else str(message)


class SmsAlerts(Block):
    """SMS alerts (critical, business hours) through 46elks or Twilio.

    For 46elks the username and password are the API credentials; for Twilio they are
    the account SID and the auth token.

    Example:
        Text the on-call phones with the block saved by `feedback-ops up`:
        ```python
        from blocks.channels.sms import SmsAlerts

        sms = SmsAlerts.load("BLOCK_NAME")
        sms.channel().send(message)
        ```
    """

    _block_type_name: ClassVar[str] = "Feedback Ops SMS Alerts"
    _block_type_slug: ClassVar[str] = "feedback-ops-sms"
    _description: ClassVar[str] = "SMS gateway (46elks or Twilio), sender and phone numbers."
    _documentation_url: ClassVar[HttpUrl] = HttpUrl("https://46elks.com/docs/send-sms")

    provider: Literal["46elks", "twilio"] = Field(
        default="46elks", description="SMS gateway: 46elks or twilio."
    )
    username: str = Field(description="46elks API username, or the Twilio account SID.")
    password: SecretStr = Field(description="46elks API password, or the Twilio auth token.")
    sender: str = Field(description="Sender id (up to 11 letters and digits) or E.164 number.")
    recipients: list[str] = Field(
        min_length=1, description="Phone numbers in E.164 form, e.g. +46701234567."
    )
    api_url: str | None = Field(
        default=None,
        description="API endpoint (46elks) or base URL (Twilio); empty for the provider's.",
    )
    timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0, description=TIMEOUT_DESCRIPTION)

    def channel(self) -> FortySixElksChannel | TwilioChannel:
        """The SMS client for the chosen provider."""
        password = self.password.get_secret_value()
        if self.provider == "46elks":
            return FortySixElksChannel(
                self.username,
                password,
                self.sender,
                self.recipients,
                api_url=self.api_url or ELKS_URL,
                timeout=self.timeout,
            )
        if self.provider == "twilio":
            return TwilioChannel(
                self.username,
                password,
                self.sender,
                self.recipients,
                api_base=self.api_url or TWILIO_API_BASE,
                timeout=self.timeout,
            )
        raise ConfigError(f"SMS provider must be 46elks or twilio, got {self.provider!r}")


__all__ = [
    "SmsAlerts",
    "ELKS_URL",
    "TWILIO_API_BASE",
    "FortySixElksChannel",
    "TwilioChannel",
    "fit_parts",
    "sms_text",
]
