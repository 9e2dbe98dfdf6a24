"""One POST to a provider that answers with a JSON object, for the calls that change
something: a token refresh or grant, a subscription created."""

from __future__ import annotations

from typing import Any

import httpx

from blocks.channels.base import (
    ChannelError,
    endpoint_of,
    error_text,
    http_client,
    status_error,
    transport_error,
)


def post_json(
    base: str,
    path: str,
    *,
    provider: str,
    what: str,
    timeout: float,
    secrets: list[str],
    **kwargs: Any,
) -> dict[str, Any]:
    """`POST {base}{path}` (httpx's `json=`, `data=`, `headers=` in `kwargs`); the
    answer's JSON object.

    Raises:
        ChannelError: `{what} at host:port` refused (transient for 429 and 5xx), did not
            answer (transient), or answered without a JSON object; `secrets` are
            scrubbed from the provider's text.
    """
    endpoint = endpoint_of(base, what=f"the {provider} API", channel=provider)
    what = f"{what} at {endpoint}"
    with http_client(timeout) as client:
        try:
            response = client.post(f"{base}{path}", **kwargs)
        except httpx.TransportError as exc:
            raise transport_error(provider, what, endpoint, exc, timeout) from None
    if not response.is_success:
        raise status_error(provider, what, response, error_text(response), secrets=secrets)
    try:
        body = response.json()
    except ValueError:
        raise ChannelError(provider, f"{what} answered with something that is not JSON") from None
    if not isinstance(body, dict):
        raise ChannelError(provider, f"{what} answered with no JSON object")
    return body
