"""Re-delivering failed webhooks to the gateway's endpoint for their provider, as the
provider would: the stored raw body unchanged, a signature computed afresh with the
current key, the provider's own headers (Shopify's webhook id and topic), and a mark
that it is a replay.

At most `replay_concurrency` requests are in flight, each on a keep-alive connection of
one aiohttp pool (the transport of `blocks.pos.merchants`), each waiting at most the
block's timeout. A 2xx is delivered; so is a 409, the gateway saying it already has
the event. Anything else, or no answer, is a failed attempt with its reason in one line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
import httpx

from blocks.channels.base import one_line
from blocks.pos.merchants import client_session, send

ALREADY_HAVE = 409


@dataclass(frozen=True)
class Replay:
    """One delivery to make: where, with what headers and body, which attempt."""

    provider: str
    event_id: str
    url: str
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    attempt: int
    source_id: int | None


@dataclass(frozen=True)
class Sent:
    """What the gateway answered to one replay."""

    replay: Replay
    ok: bool
    http_status: int | None
    error: str | None


def replay_all(replays: Sequence[Replay], concurrency: int, timeout: float) -> list[Sent]:
    """Send every replay, at most `concurrency` at once; the answers in their order."""
    return asyncio.run(_replay_all(replays, concurrency, timeout))


async def _replay_all(replays: Sequence[Replay], concurrency: int, timeout: float) -> list[Sent]:
    results: list[Sent | None] = [None] * len(replays)
    todo = iter(range(len(replays)))
    tls = httpx.create_ssl_context()

    async with client_session(concurrency, timeout, tls) as session:

        async def work() -> None:
            # The workers share `todo`: each takes the next replay when it is free.
            for index in todo:
                results[index] = await _one(session, replays[index], timeout)

        async with asyncio.TaskGroup() as group:
            for _ in range(min(concurrency, len(replays))):
                group.create_task(work())
    return [sent for sent in results if sent is not None]


async def _one(session: aiohttp.ClientSession, replay: Replay, timeout: float) -> Sent:
    try:
        answer = await send(session, "POST", replay.url, replay.headers, replay.body)
    except httpx.TimeoutException:
        return Sent(replay, False, None, f"no answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        return Sent(replay, False, None, f"no answer: {exc}")
    if answer.is_success or answer.status_code == ALREADY_HAVE:
        return Sent(replay, True, answer.status_code, None)
    text = one_line(answer.text, 200) if answer.text else ""
    reason = f"the gateway answered HTTP {answer.status_code}" + (f": {text}" if text else "")
    return Sent(replay, False, answer.status_code, reason)
