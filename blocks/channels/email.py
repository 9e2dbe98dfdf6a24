"""Email: alerts to devops@ through an SMTP submission server, over STARTTLS.

The session is: connect, EHLO, STARTTLS (required unless turned off; the certificate is
verified against the system CAs or `ca_file`), EHLO again, AUTH when a username is set,
then one message to every recipient. Every alert of one incident carries the same
`References` (derived from the dedup key) so mail clients show trigger, acknowledge and
resolve as one thread.
"""

from __future__ import annotations

import hashlib
import os
import smtplib
import socket
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import ClassVar, Final, NoReturn
from zoneinfo import ZoneInfo

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, SecretStr

from blocks.channels.base import (
    DEFAULT_TIMEOUT,
    TIMEOUT_DESCRIPTION,
    ChannelError,
    Delivery,
    Message,
    check_timeout,
    describe_os_error,
    one_line,
    recipients_of,
    scrub,
)
from feedback_ops.errors import ConfigError

STOCKHOLM: Final = ZoneInfo("Europe/Stockholm")
STATUS: Final = {"trigger": "triggered", "acknowledge": "acknowledged", "resolve": "resolved"}


class SmtpEmailChannel:
    """Sends alerts by email through an SMTP server (port 587 submission by default).

    Args:
        host: The SMTP server's host name (also the name its certificate must carry).
        port: The SMTP port; 587 for submission with STARTTLS.
        sender: The From address, `ops@example.se` or `Feedback Ops <ops@example.se>`.
        recipients: Default recipients, e.g. `devops@ai-feedback.se`.
        username: The SMTP login; None to send without AUTH (a trusted relay).
        password: The SMTP password (a secret).
        starttls: Require STARTTLS; turn off only for a relay on the same host.
        ca_file: PEM file of the CA to trust instead of the system's (a private CA).
        timeout: Seconds to wait for the server at each step.

    Raises:
        ConfigError: host, port, sender or ca_file are invalid.
    """

    name: str = "email"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: Sequence[str],
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        ca_file: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.host = host.strip()
        if not self.host:
            raise ConfigError("email: the SMTP host is empty")
        if not 1 <= int(port) <= 65535:
            raise ConfigError("email: the SMTP port must be between 1 and 65535")
        self.port = int(port)
        self.sender = sender.strip()
        self._envelope_from = parseaddr(self.sender)[1]
        if "@" not in self._envelope_from:
            raise ConfigError("email: the sender must be an email address")
        if isinstance(recipients, str):
            recipients = [recipients]
        self.recipients = tuple(r.strip() for r in recipients if r.strip())
        self.username = username.strip() if username and username.strip() else None
        self._password = password
        self.starttls = starttls
        if ca_file and not os.path.isfile(ca_file):
            raise ConfigError(f"email: the CA file {ca_file} does not exist")
        self.ca_file = ca_file or None
        self.timeout = check_timeout(self.name, timeout)

    @property
    def server(self) -> str:
        """`host:port` of the SMTP server."""
        return f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return (
            f"SmtpEmailChannel(server={self.server!r}, sender={self.sender!r}, "
            f"recipients={list(self.recipients)!r}, username={self.username!r}, "
            f"starttls={self.starttls})"
        )

    def compose(self, message: Message, recipients: Sequence[str]) -> EmailMessage:
        """The email for `message`: subject `[CRITICAL] title`, plain-text body.

        Headers: a fresh Message-ID; `References` (and `In-Reply-To` for follow-ups)
        naming the incident's thread; `X-Feedback-Ops-Dedup-Key`, `-Severity`, `-Action`;
        `Auto-Submitted: auto-generated` so that vacation replies stay away.
        """
        domain = self._envelope_from.rpartition("@")[2] or "feedback-ops.invalid"
        thread = f"<alert.{hashlib.sha256(message.dedup_key.encode()).hexdigest()[:32]}@{domain}>"
        email = EmailMessage()
        email["Subject"] = f"{message.label} {message.title}"
        email["From"] = self.sender
        email["To"] = ", ".join(recipients)
        email["Date"] = formatdate(localtime=True)
        email["Message-ID"] = make_msgid("feedback-ops", domain=domain)
        email["References"] = thread
        if message.action != "trigger":
            email["In-Reply-To"] = thread
        email["Auto-Submitted"] = "auto-generated"
        email["X-Feedback-Ops-Dedup-Key"] = message.dedup_key
        email["X-Feedback-Ops-Severity"] = message.severity
        email["X-Feedback-Ops-Action"] = message.action
        if message.severity == "critical" and message.action == "trigger":
            email["X-Priority"] = "1"
            email["Importance"] = "high"
        email.set_content(plain_text(message))
        return email

    def send(self, message: Message, recipients: Sequence[str] | None = None) -> Delivery:
        """Email `message` to the recipients (`recipients` replaces the configured list).

        Raises:
            ChannelError: transient: the server is unreachable, timed out, dropped the
                connection or answered 4xx; not transient: no STARTTLS when required, an
                untrusted certificate, a rejected login, refused recipients (5xx).
        """
        to = recipients_of(self.name, recipients, self.recipients)
        email = self.compose(message, to)
        smtp: smtplib.SMTP | None = None
        stage = "connecting"
        try:
            # Connecting in the constructor also records the host name that STARTTLS
            # verifies the certificate against.
            smtp = smtplib.SMTP(
                self.host, self.port, timeout=self.timeout, local_hostname=_local_hostname()
            )
            stage = "greeting"
            smtp.ehlo_or_helo_if_needed()
            if self.starttls:
                if not smtp.has_extn("starttls"):
                    raise ChannelError(
                        self.name,
                        f"SMTP server {self.server} does not offer STARTTLS, which is "
                        "required (turn starttls off only for a trusted local relay)",
                    )
                stage = "STARTTLS"
                smtp.starttls(context=self._tls_context())
                smtp.ehlo()
            if self.username:
                stage = "login"
                smtp.login(self.username, self._password or "")
            stage = "sending"
            refused = smtp.send_message(email, from_addr=self._envelope_from, to_addrs=list(to))
        except ChannelError:
            raise
        except Exception as exc:  # every failure becomes a classified ChannelError
            self._fail(exc, stage)
        finally:
            if smtp is not None:
                _quietly_quit(smtp)
        delivered = tuple(r for r in to if r not in refused)
        delivery = Delivery(self.name, delivered, None, str(email["Message-ID"]).strip())
        if refused:
            raise self._refused(refused, len(to), delivery)
        return delivery

    def _tls_context(self) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ChannelError(
                self.name, f"cannot load the CA file {self.ca_file} ({describe_os_error(exc)})"
            ) from None

    def _fail(self, exc: BaseException, stage: str) -> NoReturn:
        """Raise the classified ChannelError for a failed SMTP session."""
        where = f"SMTP server {self.server}"
        secrets = [self._password]
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            raise ChannelError(
                self.name,
                f"SMTP login rejected for user {self.username} at {self.server} "
                f"({_reply(exc.smtp_code, exc.smtp_error, secrets)})",
                status=exc.smtp_code,
            ) from None
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            raise self._refused(exc.recipients, len(exc.recipients), None) from None
        if isinstance(exc, smtplib.SMTPSenderRefused):
            raise ChannelError(
                self.name,
                f"{where} refused the sender {self._envelope_from} "
                f"({_reply(exc.smtp_code, exc.smtp_error, secrets)})",
                transient=400 <= exc.smtp_code < 500,
                status=exc.smtp_code,
            ) from None
        if isinstance(exc, smtplib.SMTPResponseException):
            raise ChannelError(
                self.name,
                f"{where} answered {_reply(exc.smtp_code, exc.smtp_error, secrets)} during {stage}",
                transient=400 <= exc.smtp_code < 500,
                status=exc.smtp_code,
            ) from None
        if isinstance(exc, smtplib.SMTPServerDisconnected) and isinstance(
            exc.__context__, TimeoutError
        ):
            exc = exc.__context__  # smtplib reports a read timeout as a disconnect
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            raise ChannelError(
                self.name, f"{where} closed the connection during {stage}", transient=True
            ) from None
        if isinstance(exc, smtplib.SMTPException):
            raise ChannelError(
                self.name, f"{where} failed during {stage}: {one_line(scrub(str(exc), secrets))}"
            ) from None
        if isinstance(exc, ssl.SSLCertVerificationError):
            raise ChannelError(
                self.name,
                f"the TLS certificate of {where} is not trusted "
                f"({exc.verify_message or 'certificate verify failed'})",
            ) from None
        if isinstance(exc, ssl.SSLError):
            raise ChannelError(
                self.name, f"TLS with {where} failed ({exc.reason or 'handshake failed'})"
            ) from None
        if isinstance(exc, TimeoutError):
            raise ChannelError(
                self.name,
                f"{where} did not answer within {self.timeout:g} s ({stage})",
                transient=True,
            ) from None
        if isinstance(exc, OSError) and stage == "connecting":
            raise ChannelError(
                self.name, f"{where} is unreachable ({describe_os_error(exc)})", transient=True
            ) from None
        if isinstance(exc, OSError):
            raise ChannelError(
                self.name,
                f"{where} connection failed during {stage} ({describe_os_error(exc)})",
                transient=True,
            ) from None
        raise exc

    def _refused(
        self,
        refused: dict[str, tuple[int, bytes]],
        total: int,
        delivery: Delivery | None,
    ) -> ChannelError:
        codes = [code for code, _ in refused.values()]
        listed = "; ".join(
            f"{addr} ({_reply(code, text, [self._password])})"
            for addr, (code, text) in refused.items()
        )
        count = f"{len(refused)} of {total} recipients"
        if len(refused) == total:
            count = "every recipient"
        return ChannelError(
            self.name,
            f"SMTP server {self.server} refused {count}: {listed}",
            transient=all(400 <= code < 500 for code in codes),
            status=codes[0] if len(set(codes)) == 1 else None,
            failed_recipients=list(refused),
            delivery=delivery,
        )


def plain_text(message: Message) -> str:
    """The email body: the text, then facts, details and links, one per line."""
    when = message.timestamp.astimezone(STOCKHOLM)
    lines = [message.body.rstrip() or "(no further details)", ""]
    if message.mention:
        lines.append(f"Escalated to: {message.mention}")
    lines += [
        f"Severity:  {message.severity.upper()}",
        f"Status:    {STATUS[message.action]}",
        f"Source:    {message.source}",
        f"Detected:  {when:%Y-%m-%d %H:%M:%S %Z} ({message.timestamp.isoformat()})",
        f"Dedup key: {message.dedup_key}",
    ]
    if message.details:
        lines += ["", "Details:"]
        lines += [f"  {key}: {value}" for key, value in message.details.items()]
    if message.links:
        lines += ["", "Links:"]
        lines += [f"  {text}: {href}" for text, href in message.links]
    return "\n".join(lines) + "\n"


def _reply(code: int, text: bytes | str, secrets: Sequence[str | None]) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return one_line(scrub(f"{code} {text}", secrets))


def _local_hostname() -> str:
    # smtplib's default, getfqdn(), can stall on a reverse DNS lookup; EHLO needs no FQDN.
    name = socket.gethostname()
    return name if name and name.isascii() and " " not in name else "localhost"


def _quietly_quit(smtp: smtplib.SMTP) -> None:
    # The message is accepted (or the error decided) before QUIT: its failure changes nothing.
    try:
        if smtp.sock is not None:
            smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()


class EmailAlerts(Block):
    """Email alerts (devops@ai-feedback.se) through an SMTP server with STARTTLS.

    Example:
        Email an alert with the block saved by `feedback-ops up`:
        ```python
        from blocks.channels.email import EmailAlerts

        alerts = EmailAlerts.load("BLOCK_NAME")
        alerts.channel().send(message)
        ```
    """

    _block_type_name: ClassVar[str] = "Feedback Ops Email Alerts"
    _block_type_slug: ClassVar[str] = "feedback-ops-email"
    _description: ClassVar[str] = "SMTP server, sender and recipients of alert emails."
    _documentation_url: ClassVar[HttpUrl] = HttpUrl(
        "https://docs.python.org/3/library/smtplib.html"
    )

    host: str = Field(description="SMTP server host name, as its TLS certificate names it.")
    port: int = Field(default=587, ge=1, le=65535, description="SMTP port (587: submission).")
    sender: str = Field(description="From address, e.g. Feedback Ops <alerts@ai-feedback.se>.")
    recipients: list[str] = Field(
        min_length=1, description="Email addresses that receive every alert."
    )
    username: str | None = Field(default=None, description="SMTP login; empty for no AUTH.")
    password: SecretStr | None = Field(default=None, description="SMTP password.")
    starttls: bool = Field(
        default=True, description="Require STARTTLS; off only for a relay on the same host."
    )
    ca_file: str | None = Field(
        default=None, description="PEM file of a private CA to trust instead of the system's."
    )
    timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0, description=TIMEOUT_DESCRIPTION)

    def channel(self) -> SmtpEmailChannel:
        """The SMTP client for this server and these recipients."""
        return SmtpEmailChannel(
            host=self.host,
            port=self.port,
            sender=self.sender,
            recipients=self.recipients,
            username=self.username or None,
            password=self.password.get_secret_value() if self.password is not None else None,
            starttls=self.starttls,
            ca_file=self.ca_file or None,
            timeout=self.timeout,
        )


__all__ = ["EmailAlerts", "SmtpEmailChannel", "plain_text"]
