"""The platform's own POS tokens that expire, and the block the sweep renews them in.

- Square: an OAuth access token lasts 30 days. It is refreshed with `POST
  /oauth2/token` (`grant_type=refresh_token`, the application's id and secret) once
  fewer than `SQUARE_REFRESH_WITHIN` are left; Square advises every 7 days or sooner.
  The code flow answers with the same refresh token, PKCE with a new one: whichever
  comes back is kept.
- Zettle: the assertion grant gives a token of 7200 s and no refresh token; a new one
  is asked with the same API key once fewer than `ZETTLE_RENEW_WITHIN` are left.

The renewed tokens live in the `pos-tokens` block, which the environment never writes:
`up` lays the environment over the `pos-providers` block at every start, and would put
the 30-day-old token back. A renewed Square token remembers a fingerprint of the
configured token it replaced, so an operator who configures a new token (a fresh
authorization) is obeyed at once: the configured one wins when it is not the one the
block's token replaced.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, SecretStr

from blocks.channels.base import ChannelError
from blocks.pos import JWT_BEARER, PosProviders, provider_time, reveal
from blocks.pos.calls import post_json
from feedback_ops.errors import ConfigError

SQUARE_REFRESH_WITHIN = timedelta(days=7)
ZETTLE_RENEW_WITHIN = timedelta(minutes=15)
"""A sweep every 5 minutes renews a 2-hour token at least twice before it ends."""


class PosTokens(Block):
    """The POS tokens the platform renews itself, and the Zettle signing key of the
    subscription the sweep last created. Written by `pos-health-sweep`, never by `up`.

    Example:
        ```python
        from blocks.pos.tokens import PosTokens

        tokens = PosTokens.load("BLOCK_NAME")
        print(tokens.square_expires_at, tokens.zettle_expires_at)
        ```
    """

    _block_type_name: ClassVar[str] = "Feedback Ops POS Tokens"
    _block_type_slug: ClassVar[str] = "feedback-ops-pos-tokens"
    _description: ClassVar[str] = "POS tokens renewed by the health sweep, and signing keys."
    _documentation_url: ClassVar[HttpUrl] = HttpUrl(
        "https://developer.squareup.com/docs/oauth-api/refresh-revoke-limit-scope"
    )

    square_access_token: SecretStr | None = Field(
        default=None, description="The refreshed Square access token."
    )
    square_refresh_token: SecretStr | None = Field(
        default=None, description="The refresh token Square answered with last."
    )
    square_expires_at: datetime | None = Field(
        default=None, description="When the refreshed Square token expires."
    )
    square_replaces: str | None = Field(
        default=None, description="Fingerprint of the configured token it replaced."
    )
    zettle_access_token: SecretStr | None = Field(
        default=None, description="The Zettle access token in use."
    )
    zettle_expires_at: datetime | None = Field(
        default=None, description="When the Zettle access token expires."
    )
    zettle_signing_key: SecretStr | None = Field(
        default=None, description="Signing key of the Zettle subscription last created."
    )
    zettle_previous_signing_key: SecretStr | None = Field(
        default=None, description="The signing key before it, until its deliveries end."
    )


def fingerprint(secret: SecretStr | None) -> str | None:
    """A short, one-way name of a token: tells two tokens apart, reveals neither."""
    if secret is None:
        return None
    return hashlib.sha256(reveal(secret).encode()).hexdigest()[:16]


def square_in_use(providers: PosProviders, tokens: PosTokens) -> tuple[SecretStr | None, bool]:
    """The Square token to use, and whether it is the block's refreshed one."""
    refreshed = tokens.square_access_token is not None and tokens.square_replaces == (
        fingerprint(providers.square_access_token)
    )
    if refreshed:
        return tokens.square_access_token, True
    return providers.square_access_token, False


def with_tokens(providers: PosProviders, tokens: PosTokens) -> PosProviders:
    """`providers` with the Square token in use in place of the configured one."""
    token, refreshed = square_in_use(providers, tokens)
    if not refreshed:
        return providers
    return providers.model_copy(update={"square_access_token": token})


def square_needs_refresh(expires_at: datetime | None, now: datetime) -> bool:
    """Fewer than 7 days left (a token that never expires needs none)."""
    return expires_at is not None and expires_at - now < SQUARE_REFRESH_WITHIN


def refresh_square(providers: PosProviders, tokens: PosTokens, now: datetime) -> PosTokens:
    """A new Square access token by the refresh grant; `tokens` with it.

    Raises:
        ConfigError: the application id, secret or refresh token is not configured.
        ChannelError: Square refused or did not answer (transient for 429, 5xx and no
            answer); no token in the message.
    """
    _, refreshed = square_in_use(providers, tokens)
    refresh = tokens.square_refresh_token if refreshed else providers.square_refresh_token
    missing = [
        variable
        for variable, value in (
            ("SQUARE_APPLICATION_ID", providers.square_application_id),
            ("SQUARE_APPLICATION_SECRET", providers.square_application_secret),
            ("SQUARE_REFRESH_TOKEN", refresh),
        )
        if not value
    ]
    if missing:
        raise ConfigError(
            f"cannot refresh the Square token: {', '.join(missing)} not set (block pos-providers)"
        )
    secret, refresh_text = reveal(providers.square_application_secret), reveal(refresh)
    base = providers.square_api_url.rstrip("/")
    what = "Square POST /oauth2/token (refresh)"
    answer = post_json(
        base,
        "/oauth2/token",
        provider="square",
        what=what,
        timeout=providers.timeout_seconds,
        secrets=[secret, refresh_text],
        json={
            "client_id": providers.square_application_id,
            "client_secret": secret,
            "grant_type": "refresh_token",
            "refresh_token": refresh_text,
        },
        headers={"Square-Version": providers.square_version},
    )
    access = str(answer.get("access_token") or "")
    if not access:
        raise ChannelError("square", f"{what} answered without an access_token")
    expires = answer.get("expires_at")
    return tokens.model_copy(
        update={
            "square_access_token": SecretStr(access),
            "square_refresh_token": SecretStr(str(answer.get("refresh_token") or refresh_text)),
            "square_expires_at": provider_time(expires),
            "square_replaces": fingerprint(providers.square_access_token),
        }
    )


def zettle_needs_token(tokens: PosTokens, now: datetime) -> bool:
    """No Zettle token yet, or fewer than 15 minutes left of it."""
    return (
        tokens.zettle_access_token is None
        or tokens.zettle_expires_at is None
        or tokens.zettle_expires_at - now < ZETTLE_RENEW_WITHIN
    )


def renew_zettle(providers: PosProviders, tokens: PosTokens, now: datetime) -> PosTokens:
    """A new Zettle access token by the assertion grant; `tokens` with it.

    Raises:
        ChannelError: Zettle refused the key or did not answer; no key in the message.
    """
    key = reveal(providers.zettle_api_key)
    answer = post_json(
        providers.zettle_oauth_url.rstrip("/"),
        "/token",
        provider="zettle",
        what="Zettle POST /token",
        timeout=providers.timeout_seconds,
        secrets=[key],
        data={
            "grant_type": JWT_BEARER,
            "client_id": providers.zettle_client_id or "",
            "assertion": key,
        },
    )
    access = str(answer.get("access_token") or "")
    if not access:
        raise ChannelError("zettle", "Zettle POST /token answered without an access_token")
    seconds = float(answer.get("expires_in") or 0)
    return tokens.model_copy(
        update={
            "zettle_access_token": SecretStr(access),
            "zettle_expires_at": now + timedelta(seconds=seconds),
        }
    )
