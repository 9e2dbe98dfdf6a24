"""What every alert channel shares: the message, the receipt, the error and HTTP rules.

Plain Python, no Prefect: a channel's client speaks one provider's protocol, and its
block (in the channel's own module) builds it. Errors say which channel failed and why
in one secret-free line, and whether another attempt could help (`transient`), so a
task can retry throttling and outages but fail at once on a revoked webhook or a wrong
password.
"""

from __future__ import annotations

import email.utils
import errno
import json
import math
import socket
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit

import httpx

from feedback_ops.errors import ConfigError, OpsError, TransientError
from policy import Severity

Action = Literal["trigger", "acknowledge", "resolve"]

ACTIONS: Final[tuple[str, ...]] = ("trigger", "acknowledge", "resolve")
DEFAULT_TIMEOUT: Final = 10.0
TIMEOUT_DESCRIPTION: Final = "Seconds to wait for the provider to connect and answer."
PROVIDER_TEXT_LIMIT: Final = 200
# PagerDuty's limit; the other channels accept longer keys, but one key serves them all.
DEDUP_KEY_LIMIT: Final = 255
USER_AGENT: Final = "feedback-ops-alerts/1.0"


@dataclass(frozen=True)
class Message:
    """One alert, or a follow-up (acknowledge, resolve) of an earlier one.

    Required fields come first so that the message can be built positionally too.

    Attributes:
        title: A one-line headline; line breaks are folded into spaces.
        body: Free text: what happened and what to do.
        severity: The runbook's level: a `Severity`, or its name (`critical`, ...).
        dedup_key: Identifies the incident across trigger, acknowledge and resolve, on
            every channel (PagerDuty dedup key, email thread, Slack context). One line,
            at most 255 characters.
        timestamp: When the condition was detected; must be timezone-aware.
        action: `trigger` (default), `acknowledge` or `resolve`.
        source: The system that raised the alert.
        details: Key/value facts shown with the alert (PagerDuty custom details).
        links: `(text, href)` pairs: dashboards, runbook sections.
        mention: Who to call out, e.g. a Slack handle `@eng-lead` or user id `U024BE7LH`.
    """

    title: str
    body: str
    severity: Severity
    dedup_key: str
    timestamp: datetime
    action: Action = "trigger"
    source: str = "feedback-ops"
    details: Mapping[str, Any] = field(default_factory=dict, hash=False)
    links: tuple[tuple[str, str], ...] = ()
    mention: str | None = None

    def __post_init__(self) -> None:
        title = " ".join(str(self.title).split())
        if not title:
            raise ValueError("an alert message needs a non-empty title")
        object.__setattr__(self, "title", title)
        object.__setattr__(self, "severity", Severity.parse(str(self.severity)))
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}")
        key = self.dedup_key
        if not key or key != key.strip() or any(c.isspace() and c != " " for c in key):
            raise ValueError("dedup_key must be a non-empty single line without outer spaces")
        if len(key) > DEDUP_KEY_LIMIT:
            raise ValueError(f"dedup_key is longer than {DEDUP_KEY_LIMIT} characters")
        if self.timestamp.tzinfo is None or self.timestamp.utcoffset() is None:
            raise ValueError("timestamp must be timezone-aware")
        object.__setattr__(self, "links", tuple((str(t), str(h)) for t, h in self.links))

    @property
    def label(self) -> str:
        """`[CRITICAL]` for a trigger, `[ACKNOWLEDGED]` or `[RESOLVED]` for follow-ups."""
        if self.action == "resolve":
            return "[RESOLVED]"
        if self.action == "acknowledge":
            return "[ACKNOWLEDGED]"
        return f"[{self.severity.upper()}]"


@dataclass(frozen=True)
class Delivery:
    """The receipt of a message a provider accepted.

    Attributes:
        channel: The channel's name (`slack`, `email`, `pagerduty`, `sms`).
        recipients: Who it went to: email addresses, phone numbers, Slack mentions;
            empty for PagerDuty, which routes by its own escalation policy.
        status_code: The provider's HTTP status, or None (SMTP).
        provider_id: The provider's reference: the PagerDuty dedup key, 46elks SMS ids
            and Twilio message SIDs (comma-separated when several), the email
            Message-ID; None for Slack, which returns none.
    """

    channel: str
    recipients: tuple[str, ...]
    status_code: int | None
    provider_id: str | None


@runtime_checkable
class AlertSender(Protocol):
    """An alert channel's client: something that can deliver a `Message`."""

    name: str

    def send(self, message: Message, recipients: Sequence[str] | None = None) -> Delivery:
        """Deliver `message`; `recipients` replaces the configured list (escalation).

        Raises:
            ChannelError: the provider did not accept the message.
        """
        ...


class ChannelError(OpsError):
    """A channel could not deliver a message.

    Building one with `transient=True` gives a `TransientChannelError`, which is also a
    `TransientError`, which the tasks' shared retry policy retries.

    Attributes:
        channel: The channel's name, which also starts the message (`slack: ...`).
        reason: The message without the channel prefix.
        transient: Another attempt may succeed (429, 5xx, timeouts, refused connections).
        status: The provider's HTTP status (or SMTP reply code), when there was one.
        retry_after: Seconds the provider asked to wait (Retry-After), when it did.
        failed_recipients: Recipients that were not reached, when some were.
        delivery: What was delivered before the failure (partial success), if anything.
    """

    channel: str
    reason: str
    transient: bool
    status: int | None
    retry_after: float | None
    failed_recipients: tuple[str, ...]
    delivery: Delivery | None

    def __new__(
        cls,
        channel: str,
        reason: str,
        *,
        transient: bool = False,
        status: int | None = None,
        retry_after: float | None = None,
        failed_recipients: Sequence[str] = (),
        delivery: Delivery | None = None,
    ) -> ChannelError:
        target = TransientChannelError if transient and cls is ChannelError else cls
        return super().__new__(target)

    def __init__(
        self,
        channel: str,
        reason: str,
        *,
        transient: bool = False,
        status: int | None = None,
        retry_after: float | None = None,
        failed_recipients: Sequence[str] = (),
        delivery: Delivery | None = None,
    ) -> None:
        super().__init__(f"{channel}: {reason}")
        self.channel = channel
        self.reason = " ".join(reason.split())
        self.transient = isinstance(self, TransientError)
        self.status = status
        self.retry_after = retry_after
        self.failed_recipients = tuple(failed_recipients)
        self.delivery = delivery

    def __reduce__(self) -> tuple[Any, ...]:
        # The default rebuilds from `args` (the whole message), which __init__ can't take.
        return (type(self), (self.channel, self.reason), dict(self.__dict__))


class TransientChannelError(ChannelError, TransientError):
    """A `ChannelError` worth retrying; `ChannelError(..., transient=True)` builds one."""


# --- helpers shared by the channels --------------------------------------------------------


def trim(text: str, limit: int, *, ellipsis: str = "…") -> str:
    """`text` cut to at most `limit` characters, marked with `ellipsis` when cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - len(ellipsis), 0)] + ellipsis


def one_line(text: str, limit: int = PROVIDER_TEXT_LIMIT) -> str:
    """`text` on one line (whitespace runs folded) and at most `limit` characters."""
    return trim(" ".join(text.split()), limit)


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every non-trivial secret in `secrets` replaced by `[redacted]`."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text


def key_hint(secret: str) -> str:
    """`...abcd`: the last four characters of a long secret, enough to tell keys apart."""
    return f"...{secret[-4:]}" if len(secret) >= 16 else "(short key)"


def mask_phone(number: str) -> str:
    """A phone number with every digit but the last three hidden: `+*********567`."""
    digits = sum(ch.isdigit() for ch in number)
    seen = 0
    masked = []
    for ch in number:
        if ch.isdigit():
            seen += 1
            masked.append(ch if seen > digits - 3 else "*")
        elif ch == "+":
            masked.append(ch)
    return "".join(masked)


def endpoint_of(url: str, *, what: str, channel: str) -> str:
    """`host:port` of an http(s) URL, safe to print (no path, query or credentials).

    Raises:
        ConfigError: the URL is not an http:// or https:// URL with a host; the message
            does not repeat the URL, which may be a secret.
    """
    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise ConfigError(f"{channel}: {what} URL must be an https:// URL with a host name")
    return f"{parts.hostname}:{port or (443 if parts.scheme == 'https' else 80)}"


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None if absent."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def is_transient_status(status: int) -> bool:
    """Whether an HTTP status is worth retrying: 408, 429 and every 5xx."""
    return status in (408, 429) or status >= 500


def status_error(
    channel: str,
    what: str,
    response: httpx.Response,
    detail: str,
    *,
    secrets: Iterable[str | None] = (),
) -> ChannelError:
    """The `ChannelError` for a non-2xx answer, classified by its status.

    Args:
        channel: The channel's name.
        what: The provider as an operator knows it, e.g. `the Slack webhook`.
        response: The provider's answer.
        detail: The provider's own error text (already extracted from its format).
        secrets: Values that must not appear in the message.
    """
    status = response.status_code
    text = one_line(scrub(detail, secrets)) or response.reason_phrase or "no error text"
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if status == 429:
        reason = f"{what} is rate limiting requests (HTTP 429: {text})"
    else:
        reason = f"{what} answered HTTP {status}: {text}"
    if retry_after is not None:
        reason += f"; retry after {retry_after:g} s"
    return ChannelError(
        channel,
        reason,
        transient=is_transient_status(status),
        status=status,
        retry_after=retry_after,
    )


def transport_error(
    channel: str, what: str, endpoint: str, exc: httpx.TransportError, timeout: float
) -> ChannelError:
    """The `ChannelError` for a request that got no HTTP answer.

    Timeouts, refused or dropped connections are transient; a TLS certificate that does
    not verify is not (another attempt meets the same certificate).
    """
    if isinstance(exc, httpx.TimeoutException):
        phase = {
            httpx.ConnectTimeout: "no connection",
            httpx.ReadTimeout: "no answer",
            httpx.WriteTimeout: "could not send the request",
            httpx.PoolTimeout: "no free connection",
        }.get(type(exc), "no answer")
        return ChannelError(
            channel, f"{what} at {endpoint}: {phase} within {timeout:g} s", transient=True
        )
    cause = _root_os_error(exc)
    if isinstance(cause, ssl.SSLCertVerificationError):
        why = cause.verify_message or "certificate verify failed"
        return ChannelError(
            channel, f"the TLS certificate of {what} at {endpoint} is not trusted ({why})"
        )
    if isinstance(exc, httpx.RemoteProtocolError):
        return ChannelError(
            channel,
            f"{what} at {endpoint} dropped the connection before answering",
            transient=True,
        )
    return ChannelError(
        channel,
        f"could not reach {what} at {endpoint} ({describe_os_error(cause)})",
        transient=True,
    )


def describe_os_error(exc: BaseException | None) -> str:
    """A few words for a socket-level failure: `connection refused`, `host not found`."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError):
        if isinstance(exc, socket.gaierror):
            return "host name not found"
        if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return "network unreachable"
        if exc.strerror:
            return exc.strerror.lower()
    if exc is None:
        return "connection failed"
    return one_line(str(exc), 80) or type(exc).__name__


def _root_os_error(exc: BaseException) -> BaseException | None:
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None or isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def post(
    channel: str,
    what: str,
    url: str,
    *,
    timeout: float,
    client: httpx.Client,
    json_body: Any = None,
    form: Mapping[str, str] | None = None,
    auth: tuple[str, str] | None = None,
) -> httpx.Response:
    """POST once, turning every transport failure into a classified `ChannelError`.

    The caller checks the status; nothing here follows redirects or raises on 4xx/5xx.
    """
    endpoint = endpoint_of(url, what=what, channel=channel)
    extra: dict[str, Any] = {}
    if auth is not None:
        extra["auth"] = httpx.BasicAuth(*auth)
    try:
        if json_body is not None:
            return client.post(
                url,
                content=json.dumps(json_body, default=str, ensure_ascii=False).encode(),
                headers={"Content-Type": "application/json; charset=utf-8"},
                **extra,
            )
        return client.post(url, data=dict(form or {}), **extra)
    except httpx.TransportError as exc:
        raise transport_error(channel, what, endpoint, exc, timeout) from None


def http_client(timeout: float) -> httpx.Client:
    """An httpx client with an explicit timeout and no redirects (a moved webhook is an error)."""
    return httpx.Client(
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json, text/plain, */*"},
    )


def check_timeout(channel: str, timeout: float) -> float:
    """`timeout` as a float, or a ConfigError when it is not a positive number."""
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise ConfigError(f"{channel}: timeout must be a positive number of seconds")
    return float(timeout)


def recipients_of(
    channel: str, override: Sequence[str] | None, configured: Sequence[str]
) -> tuple[str, ...]:
    """The recipients of one send: `override` if given, else the configured list.

    Raises:
        ChannelError: (not transient) there is nobody to send to.
    """
    if isinstance(override, str):
        override = [override]
    chosen = tuple(r.strip() for r in (override if override is not None else configured))
    chosen = tuple(r for r in chosen if r)
    if not chosen:
        raise ChannelError(channel, "no recipients: configure some or pass recipients")
    return chosen


def error_text(response: httpx.Response) -> str:
    """A provider's own error text from the error shapes the providers use: Square's
    `errors` list (`detail`), Shopify's `errors` (a string or a dict of messages),
    OAuth's `error_description` or `error`, a plain `message`. A proxy's HTML error page
    is named, not quoted; any other text is cut to 200 characters."""
    if "html" in response.headers.get("content-type", ""):
        return "an HTML page"
    try:
        body = json_object(response.text)
    except (OpsError, ValueError):
        return one_line(response.text, 200)
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        return str(first.get("detail") or first.get("code") or first)
    if errors:
        return str(errors)
    return str(body.get("error_description") or body.get("error") or body.get("message") or "")


def json_object(text: str) -> dict[str, Any]:
    """A provider's JSON answer as a dict; {} when it is not a JSON object."""
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
