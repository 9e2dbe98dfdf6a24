"""Real servers on loopback that receive alerts: an HTTP recorder and an SMTP server.

`HttpRecorder` is a FastAPI app served by uvicorn in a thread. It answers the paths of
Slack (`/slack/...`), PagerDuty (`/v2/enqueue`), 46elks (`/a1/sms`) and Twilio
(`/2010-04-01/Accounts/{sid}/Messages.json`) the way those providers do, records every
request, and can be told to fail (`fail`), to drop connections (`down`) or to demand
basic auth (`require_basic_auth`).

`SmtpReceiver` is aiosmtpd on a free port with STARTTLS required (a throwaway CA and a
certificate for localhost/127.0.0.1), AUTH PLAIN/LOGIN for one user only after TLS, and
a record of every message with whether its session was encrypted and who logged in.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import email
import email.policy
import ipaddress
import json
import logging
import re
import shutil
import socket
import ssl
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from support.asgi_server import LoopbackService
from support.net import LOOPBACK, free_port

_TWILIO_MESSAGES = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")

# --- HTTP ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the recorder received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    """Header names lower-cased."""
    body: bytes
    json: Any = None
    """The parsed body, for `application/json` requests."""
    form: dict[str, str] | None = None
    """The parsed body, for `application/x-www-form-urlencoded` requests."""

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        """`(username, password)` from an `Authorization: Basic` header, if any."""
        scheme, _, value = self.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        user, _, password = base64.b64decode(value).decode().partition(":")
        return user, password


@dataclass
class _Scripted:
    prefix: str
    status: int
    body: str | bytes | dict[str, Any] | list[Any]
    headers: dict[str, str]
    remaining: int | None


@dataclass
class _Auth:
    prefix: str
    username: str
    password: str
    body: str | dict[str, Any]


class _DropConnection(Exception):
    """Raised after a response started, so that uvicorn closes the connection."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, _DropConnection)


class HttpRecorder(LoopbackService):
    """An HTTP server on 127.0.0.1 that answers like Slack, PagerDuty, 46elks and Twilio.

    Use as a context manager; `url` is its base URL, e.g. `http://127.0.0.1:54321`.
    """

    name = "http-recorder"
    interface = "asgi3"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._scripted: list[_Scripted] = []
        self._down: dict[str, Literal["drop", "503"]] = {}
        self._auth: list[_Auth] = []
        super().__init__()
        self.app = self._build_app()

    # --- lifecycle ---

    def asgi_app(self) -> Any:
        """The app this fake serves."""
        return self._asgi

    def start(self) -> None:
        """Serve in a background thread; return once the server accepts requests."""
        logging.getLogger("uvicorn.error").addFilter(_QuietDrops())
        super().start()

    def reset(self) -> None:
        """Forget requests and every scripted failure, outage and auth rule."""
        with self._lock:
            self._requests.clear()
            self._scripted.clear()
            self._down.clear()
            self._auth.clear()

    # --- scripting ---

    def fail(
        self,
        path_prefix: str,
        status: int,
        body: str | bytes | dict[str, Any] | list[Any] = "",
        headers: dict[str, str] | None = None,
        times: int | None = 1,
    ) -> None:
        """Answer the next `times` requests under `path_prefix` with `status` and `body`.

        A dict or list body is sent as JSON, a str as text/plain. `times=None` fails for
        good. Scripted failures are used in the order they were added.
        """
        with self._lock:
            self._scripted.append(_Scripted(path_prefix, status, body, dict(headers or {}), times))

    def down(self, path_prefix: str, mode: Literal["drop", "503"] = "drop") -> None:
        """Make `path_prefix` unavailable: drop connections mid-answer, or answer 503."""
        with self._lock:
            self._down[path_prefix] = mode

    def up(self, path_prefix: str | None = None) -> None:
        """Undo `down` for `path_prefix`, or for every path."""
        with self._lock:
            if path_prefix is None:
                self._down.clear()
            else:
                self._down.pop(path_prefix, None)

    def require_basic_auth(
        self,
        path_prefix: str,
        username: str,
        password: str,
        body: str | dict[str, Any] = "Unauthorized",
    ) -> None:
        """Answer 401 with `body` to requests under `path_prefix` without these credentials."""
        with self._lock:
            self._auth.append(_Auth(path_prefix, username, password, body))

    def requests(self, path_prefix: str = "") -> list[RecordedRequest]:
        """The recorded requests whose path starts with `path_prefix`, oldest first."""
        with self._lock:
            return [r for r in self._requests if r.path.startswith(path_prefix)]

    # --- serving ---

    async def _asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            with self._lock:
                mode = next((m for p, m in self._down.items() if scope["path"].startswith(p)), None)
            if mode == "drop":
                await self._record_raw(scope, receive)
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"content-length", b"1000")],
                    }
                )
                raise _DropConnection(scope["path"])
        await self.app(scope, receive, send)

    async def _record_raw(self, scope: dict[str, Any], receive: Any) -> None:
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        self._record(RecordedRequest(scope["method"], scope["path"], query, headers, body))

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _build_app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

        @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        async def everything(request: Request) -> Response:
            return await self._answer(request)

        return app

    async def _answer(self, request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        content_type = headers.get("content-type", "")
        parsed_json: Any = None
        form: dict[str, str] | None = None
        if content_type.startswith("application/json"):
            try:
                parsed_json = json.loads(body)
            except ValueError:
                parsed_json = None
        elif content_type.startswith("application/x-www-form-urlencoded"):
            form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        recorded = RecordedRequest(
            request.method,
            request.url.path,
            dict(request.query_params),
            headers,
            body,
            parsed_json,
            form,
        )
        self._record(recorded)
        path = recorded.path
        with self._lock:
            mode = next((m for p, m in self._down.items() if path.startswith(p)), None)
            rule = next((a for a in self._auth if path.startswith(a.prefix)), None)
            scripted = next(
                (s for s in self._scripted if path.startswith(s.prefix) and s.remaining != 0),
                None,
            )
            if scripted is not None and scripted.remaining is not None:
                scripted.remaining -= 1
        if mode == "503":
            return PlainTextResponse("Service Unavailable", status_code=503)
        if rule is not None and recorded.basic_auth != (rule.username, rule.password):
            return _response(401, rule.body, {"WWW-Authenticate": 'Basic realm="api"'})
        if scripted is not None:
            return _response(scripted.status, scripted.body, scripted.headers)
        return _default_answer(recorded)


def _response(
    status: int, body: str | bytes | dict[str, Any] | list[Any], headers: dict[str, str]
) -> Response:
    if isinstance(body, dict | list):
        return JSONResponse(body, status_code=status, headers=headers)
    if isinstance(body, bytes):
        return Response(body, status_code=status, headers=headers)
    return PlainTextResponse(body, status_code=status, headers=headers)


def _default_answer(request: RecordedRequest) -> Response:
    """What the real provider answers to an accepted request on this path."""
    path = request.path
    if path.startswith("/slack/"):
        return PlainTextResponse("ok")
    if path == "/v2/enqueue":
        event = request.json if isinstance(request.json, dict) else None
        if event is None:
            return JSONResponse(
                {
                    "status": "invalid event",
                    "message": "Event object is invalid",
                    "errors": ["Malformed JSON"],
                },
                status_code=400,
            )
        dedup_key = event.get("dedup_key") or uuid.uuid4().hex
        return JSONResponse(
            {"status": "success", "message": "Event processed", "dedup_key": dedup_key},
            status_code=202,
        )
    if path == "/a1/sms":
        form = request.form or {}
        return JSONResponse(
            {
                "status": "created",
                "direction": "outgoing",
                "from": form.get("from"),
                "to": form.get("to"),
                "message": form.get("message"),
                "created": dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(),
                "parts": 1,
                "cost": 3500,
                "id": "s" + uuid.uuid4().hex,
            }
        )
    match = _TWILIO_MESSAGES.match(path)
    if match and request.method == "POST":
        form = request.form or {}
        sid = "SM" + uuid.uuid4().hex
        account = match["sid"]
        now = dt.datetime.now(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
        return JSONResponse(
            {
                "account_sid": account,
                "api_version": "2010-04-01",
                "body": form.get("Body"),
                "date_created": now,
                "date_sent": None,
                "date_updated": now,
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": form.get("From"),
                "messaging_service_sid": None,
                "num_media": "0",
                "num_segments": "1",
                "price": None,
                "price_unit": "USD",
                "sid": sid,
                "status": "queued",
                "to": form.get("To"),
                "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
            },
            status_code=201,
        )
    return JSONResponse({"detail": f"the recorder has no provider at {path}"}, status_code=404)


# --- a server that never answers ------------------------------------------------------------


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A loopback port that accepts TCP connections (via the backlog) but never answers.

    Clients connect, then wait: for an SMTP greeting, for an HTTP response. Yields the port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def closed_port() -> int:
    """A loopback port where nothing listens: connections are refused."""
    return free_port()


# --- SMTP ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    """A throwaway CA and a server certificate it signed, as PEM files."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_certificates(directory: Path, names: tuple[str, ...] = ("localhost",)) -> Certificates:
    """Write a CA and a certificate for `names` and 127.0.0.1 into `directory`."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "feedback-ops test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alt_names.append(x509.IPAddress(ipaddress.ip_address(LOOPBACK)))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = Certificates(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


@dataclass(frozen=True)
class ReceivedMail:
    """One message the SMTP receiver accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    message: EmailMessage
    tls: bool
    """Whether the session had switched to TLS (STARTTLS) before the message."""
    login: str | None
    """The user the session authenticated as, or None."""


@dataclass
class _AuthAttempt:
    mechanism: str
    login: str
    success: bool


@dataclass
class _Handler:
    receiver: SmtpReceiver
    mails: list[ReceivedMail] = field(default_factory=list)

    async def handle_RCPT(  # aiosmtpd's hook name
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self.receiver.rejected.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(  # aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.original_content or b""
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        login = session.auth_data if session.authenticated else None
        mail = ReceivedMail(
            mail_from=str(envelope.mail_from),
            rcpt_tos=tuple(envelope.rcpt_tos),
            content=content,
            message=parsed,
            tls=session.ssl is not None,
            login=login.decode() if isinstance(login, bytes) else login,
        )
        with self.receiver.lock:
            self.mails.append(mail)
        return "250 2.0.0 Message accepted for delivery"


class SmtpReceiver:
    """aiosmtpd on 127.0.0.1 with STARTTLS and AUTH (after TLS) for one user.

    Args:
        username: The only login accepted.
        password: Its password.
        tls: Offer (and require) STARTTLS; False for a server without TLS at all.
    """

    def __init__(
        self, username: str = "alerts", password: str = "smtp-pa55word", tls: bool = True
    ) -> None:
        self.username = username
        self.password = password
        self.tls = tls
        self.lock = threading.Lock()
        self.rejected: dict[str, str] = {}
        self.auth_attempts: list[_AuthAttempt] = []
        self._handler = _Handler(self)
        self._controller: Controller | None = None
        self._tmp: Path | None = None
        self.certificates: Certificates | None = None
        self.host = LOOPBACK
        self.port = 0

    @property
    def ca_file(self) -> str:
        """PEM file of the CA that signed the server's certificate."""
        assert self.certificates is not None, "the receiver is not running with TLS"
        return str(self.certificates.ca_file)

    @property
    def messages(self) -> list[ReceivedMail]:
        """The messages received so far, oldest first."""
        with self.lock:
            return list(self._handler.mails)

    def reject(self, address: str, reply: str = "550 5.1.1 Recipient address rejected") -> None:
        """Refuse RCPT TO `address` with `reply`."""
        self.rejected[address.lower()] = reply

    def reset(self) -> None:
        """Forget received messages, auth attempts and rejections."""
        with self.lock:
            self._handler.mails.clear()
            self.auth_attempts.clear()
            self.rejected.clear()

    def __enter__(self) -> SmtpReceiver:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Generate the certificates and start the server; return once it answers."""
        tls_context = None
        if self.tls:
            self._tmp = Path(tempfile.mkdtemp(prefix="fo-smtp-"))
            self.certificates = make_certificates(self._tmp)
            tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls_context.load_cert_chain(self.certificates.cert_file, self.certificates.key_file)
        last_error: OSError | None = None
        for _ in range(3):  # free_port() can race with another process taking the port
            self.port = free_port()
            controller = Controller(
                self._handler,
                hostname=LOOPBACK,
                port=self.port,
                server_hostname="localhost",
                ready_timeout=10,
                tls_context=tls_context,
                require_starttls=self.tls,
                authenticator=self._authenticate,
                auth_require_tls=True,
            )
            try:
                controller.start()
            except OSError as exc:
                last_error = exc
                continue
            self._controller = controller
            return
        raise RuntimeError(f"the SMTP receiver could not start: {last_error}")

    def stop(self) -> None:
        """Stop the server and remove the certificates."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode()
        ok = login == self.username and auth_data.password.decode() == self.password
        with self.lock:
            self.auth_attempts.append(_AuthAttempt(mechanism, login, ok))
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)
