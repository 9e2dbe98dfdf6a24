"""What `webhook-reconciliation` and `webhook-replay` share: the blocks they read, the walk
over the failed deliveries page by page (audit, retry windows, replay), the tally an
artifact is made of, and the alerts.

Memory stays the same however many deliveries failed: one page of rows at a time, and
of the rest only counts and the first LISTED of each kind.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prefect import get_run_logger
from prefect.runtime import flow_run

from blocks import PlatformGateway, PosProviders, PostgresDatabase, load_block
from blocks.catalog.webhooks import Outcome
from blocks.pos.deliveries import Judged, Keys, Shape, WebhookDeliveries, judge, signing_keys
from blocks.pos.replay import Replay
from blocks.pos.signatures import replay_headers
from blocks.pos.subscriptions import webhook_base
from feedback_ops.errors import ConfigError
from flows.alert_steps import AlertTargets, Conditions
from flows.pos_health_sweep import saved_tokens
from policy import Severity
from policy.webhooks import (
    MAX_REPLAY_ATTEMPTS,
    RETRY_WINDOWS,
    SUBSCRIPTION_DELETED_AFTER,
    Failure,
    Signature,
    failures_severity,
    signature_severity,
)
from tasks.webhooks import (
    SKIP_REASONS,
    Replayed,
    read_failed_deliveries,
    read_replay_states,
    replay_webhooks,
)

REPLAY_LOCK = "webhook-replay"
"""The lock a run holds while it replays: one replaying run at a time, on top of the
catalog's one claim per event."""
LISTED = 50
"""Deliveries listed by event id in the artifact for each kind (all are counted)."""
TROUBLESHOOTING = "POS Integration Troubleshooting"
SECURITY = "Security Incidents"


@dataclass(frozen=True)
class Sources:
    """The blocks a run reads, loaded once, and where replays go."""

    deliveries: WebhookDeliveries
    providers: PosProviders
    platform_db: PostgresDatabase
    ops_db: PostgresDatabase
    keys: dict[str, Keys] = field(repr=False)
    target: str | None
    """The gateway's webhook base URL (`…/webhooks`); a provider's endpoint is below it."""

    def require_target(self) -> str:
        """Where replays go.

        Raises:
            ConfigError: neither the POS providers' webhook URL nor the gateway's is set.
        """
        if self.target is None:
            raise ConfigError(
                "no webhook URL to replay to: set POS_WEBHOOK_URL or GATEWAY_URL (blocks "
                "pos-providers, platform-gateway)"
            )
        return self.target

    @property
    def square_url(self) -> str | None:
        """The notification URL Square signs: the block's, else the replay endpoint;
        None when neither is known."""
        if self.deliveries.square_notification_url:
            return self.deliveries.square_notification_url
        return None if self.target is None else f"{self.target}/square"


def load_sources(
    deliveries_block: str,
    providers_block: str,
    tokens_block: str,
    gateway_block: str,
    database_block: str,
    ops_database_block: str,
) -> Sources:
    """The blocks, and the signing keys in use (a Zettle key the POS health sweep stored
    with a re-created subscription wins over the configured one)."""
    deliveries = load_block(WebhookDeliveries, deliveries_block)
    providers = load_block(PosProviders, providers_block)
    tokens = saved_tokens(tokens_block)
    gateway = load_block(PlatformGateway, gateway_block)
    keys = signing_keys(deliveries, tokens.zettle_signing_key, tokens.zettle_previous_signing_key)
    return Sources(
        deliveries,
        providers,
        load_block(PostgresDatabase, database_block),
        load_block(PostgresDatabase, ops_database_block),
        keys,
        webhook_base(providers, gateway.url),
    )


@dataclass
class Tally:
    """What a walk over the failed deliveries found and did, by kind, with the first
    LISTED of each kind by event id."""

    events: int = 0
    replayable: Counter[str] = field(default_factory=Counter)
    """Genuine failures by provider: what a replay would send."""
    sent: Counter[str] = field(default_factory=Counter)
    delivered: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    dead: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    not_replayable: Counter[str] = field(default_factory=Counter)
    """By reason."""
    signatures: Counter[tuple[str, str]] = field(default_factory=Counter)
    """By (provider, what the signature showed)."""
    window_ended: Counter[str] = field(default_factory=Counter)
    """Undelivered events whose provider has stopped retrying, by provider."""
    listed: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def note(self, kind: str, row: dict[str, Any]) -> None:
        """List `row` under `kind` unless LISTED are there already."""
        rows = self.listed.setdefault(kind, [])
        if len(rows) < LISTED:
            rows.append(row)

    def add(self, judged: Judged, settled: str | None = None) -> None:
        """Count one judged delivery; `settled` says why a replayable one will not be
        sent (a replay delivered it already)."""
        stored = judged.stored
        self.events += 1
        if judged.replay and settled:
            # Recovered: neither a signature nor a retry window to report any more.
            self.skipped[settled] += 1
            return
        row = _row(judged)
        if judged.signature is not None:
            self.signatures[(stored.provider, judged.signature.value)] += 1
            self.note(f"signature: {judged.signature.value}", row)
        if judged.window_ended:
            self.window_ended[stored.provider] += 1
            self.note("provider retries over", row)
        if judged.replay:
            self.replayable[stored.provider] += 1
            self.note("replayable", row)
        else:
            reason = judged.reason
            self.not_replayable[reason] += 1
            self.note("unchecked" if reason.startswith("unchecked") else "not replayable", row)

    def took(self, replayed: Replayed) -> None:
        """Count what one page of replays did."""
        for outcome in replayed.outcomes:
            self.sent[outcome.provider] += 1
            if outcome.ok:
                self.delivered[outcome.provider] += 1
            else:
                self.failed[outcome.provider] += 1
                self.note("replay failed", _outcome_row(outcome))
        for outcome in replayed.dead:
            self.dead[outcome.provider] += 1
            self.note("dead-lettered", _outcome_row(outcome))
        self.skipped.update(replayed.skipped)

    def first_ids(self, kind: str, provider: str, n: int = 10) -> list[str]:
        """The event ids of the first `n` listed under `kind` for `provider`."""
        rows = self.listed.get(kind, [])
        return [str(r["event_id"]) for r in rows if r["provider"] == provider][:n]


def _outcome_row(outcome: Outcome) -> dict[str, Any]:
    return {
        "provider": outcome.provider,
        "event_id": outcome.event_id,
        "attempt": outcome.attempt,
        "why": outcome.error,
    }


def _row(judged: Judged) -> dict[str, Any]:
    stored = judged.stored
    return {
        "provider": stored.provider,
        "event_id": judged.event_id or f"(attempt {stored.id})",
        "failure": judged.failure.value if judged.failure else "-",
        "first failed": stored.first_failed_at.isoformat(),
        "failures": stored.failures,
        "why": judged.reason,
    }


def walk(
    sources: Sources,
    shape: Shape,
    since: datetime,
    until: datetime,
    at: datetime,
    *,
    send: bool,
    provider: str | None = None,
    kinds: set[Failure] | None = None,
    max_id: int | None = None,
    budget: int | None = None,
    manual: bool = False,
) -> Tally:
    """Every failed, never delivered event in (since, until], page by page: judged
    (failure, signature, retry window), and with `send` the genuine ones replayed,
    at most `budget` of them. `kinds` keeps only failures of those kinds."""
    tally = Tally()
    after: tuple[str, str] | None = None
    run_id = flow_run.get_id()
    while True:
        page = read_failed_deliveries(
            sources.deliveries,
            sources.platform_db,
            shape,
            since,
            until,
            after=after,
            provider=provider,
            max_id=max_id,
        )
        judged = [judge(row, sources.keys, sources.square_url, at, shape) for row in page.rows]
        if kinds is not None:
            judged = [j for j in judged if j.failure in kinds]
        # What a replay has settled already is neither planned nor sent; the claim
        # still guards against a run that settles an event meanwhile.
        settled = settled_events(sources.ops_db, [j for j in judged if j.replay], manual)
        for one in judged:
            tally.add(one, settled.get(_key(one)))
        wanted = [j for j in judged if j.replay and _key(j) not in settled]
        if budget is not None:
            wanted = wanted[: max(0, budget - sum(tally.sent.values()))]
        if send and wanted:
            replays = [_replay(sources, j) for j in wanted]
            tally.took(
                replay_webhooks(
                    sources.ops_db,
                    replays,
                    {
                        (j.stored.provider, str(j.event_id)): j.stored.first_failed_at
                        for j in wanted
                    },
                    at,
                    run_id,
                    sources.deliveries.replay_concurrency,
                    sources.deliveries.timeout_seconds,
                    manual,
                )
            )
        if page.after is None or (budget is not None and sum(tally.sent.values()) >= budget):
            return tally
        after = page.after


def _key(judged: Judged) -> tuple[str, str]:
    return (judged.stored.provider, str(judged.event_id))


def settled_events(
    ops_db: PostgresDatabase, judged: list[Judged], manual: bool
) -> dict[tuple[str, str], str]:
    """Of these replayable events, those a replay has settled, with why: delivered, or
    (unless `manual`, which takes them back) dead-lettered."""
    if not judged:
        return {}
    states = read_replay_states(ops_db, [(j.stored.provider, str(j.event_id)) for j in judged])
    settled = {}
    for key, state in states.items():
        if state == "delivered":
            settled[key] = SKIP_REASONS["delivered"]
        elif state == "dead" and not manual:
            settled[key] = SKIP_REASONS["dead"]
    return settled


def _replay(sources: Sources, judged: Judged) -> Replay:
    """The request that re-delivers `judged`, signed with the provider's current key."""
    stored = judged.stored
    provider = stored.provider
    key = sources.keys[provider].current
    assert key is not None and judged.signed is not None and judged.event_id is not None
    url = f"{sources.require_target()}/{provider}"
    if provider == "square" and sources.square_url:
        url = sources.square_url  # Square signs the URL it delivers to: send it there

    headers = replay_headers(
        provider,
        key,
        judged.signed,
        event_id=judged.event_id,
        attempt=1,
        event_type=stored.event_type,
        triggered_at=stored.timestamp,
        shop_domain=sources.providers.shopify_shop_domain,
        api_version=sources.providers.shopify_api_version,
    )
    body = stored.body or b""
    return Replay(provider, judged.event_id, url, headers, body, 1, stored.id)


SIGNATURE_ALERTS: dict[Signature, tuple[str, str, str]] = {
    Signature.PREVIOUS_KEY: (
        "webhook-signature-key-rotation",
        "were signed with the previous key: the rotated key is not rolled out "
        "to the gateway (configuration)",
        TROUBLESHOOTING,
    ),
    Signature.CURRENT_KEY: (
        "webhook-signature-gateway-bug",
        "were signed with the current key yet rejected: a gateway bug",
        TROUBLESHOOTING,
    ),
    Signature.NO_KEY: (
        "webhook-signature-possible-forgery",
        "match no key the platform knows: possible forgery; follow the security-incident procedure",
        SECURITY,
    ),
}
"""Each audit verdict's alert: its name, what the summary says, the runbook section."""


class WebhookAlerts(Conditions):
    """The alerts of one reconciliation: delivery failures, signatures, dead letters."""

    def __init__(self, at: datetime, targets: AlertTargets) -> None:
        super().__init__(at, targets, "webhook-")

    def failures(self, provider: str, rate: float, failed: int, total: int) -> None:
        """The runbook's WEBHOOK_DELIVERY_FAILURES: over 10 % failed in the last hour."""
        self._raise(
            f"webhook-delivery-failures:{provider}",
            "webhook-delivery-failures",
            failures_severity(self.at),
            f"Webhook deliveries from {provider}: {rate:.1%} failed in the last hour "
            f"({failed} of {total}; alert above 10 %)",
            {"provider": provider, "failed": failed, "total": total, "rate": round(rate, 4)},
            TROUBLESHOOTING,
        )

    def failures_fine(self, provider: str) -> None:
        """The provider's failure rate is back under 10 %."""
        self._clear(f"webhook-delivery-failures:{provider}")

    def signature(self, provider: str, verdict: Signature, count: int, first: list[str]) -> None:
        """Rejected deliveries whose signature told something: a key rotation not rolled
        out, a gateway bug, or a possible forgery (the security-incident path)."""
        name, what, section = SIGNATURE_ALERTS[verdict]
        self._raise(
            f"{name}:{provider}",
            name,
            signature_severity(verdict),
            f"{count} rejected {provider} webhook deliveries {what}",
            {"provider": provider, "deliveries": count, "first_event_ids": first},
            section,
        )

    def signature_fine(self, provider: str, verdict: Signature) -> None:
        """No rejected delivery of this kind any more."""
        name, _, _ = SIGNATURE_ALERTS[verdict]
        self._clear(f"{name}:{provider}")

    def dead_letters(self, provider: str, count: int, first: list[str]) -> None:
        """Events given up on after MAX_REPLAY_ATTEMPTS replays: only a person can
        recover them now (`ops.webhook_dead_letters`)."""
        self._raise(
            f"webhook-dead-letters:{provider}",
            "webhook-dead-letters",
            Severity.HIGH,
            f"{count} {provider} webhook events dead-lettered after {MAX_REPLAY_ATTEMPTS} "
            "replays failed (ops.webhook_dead_letters)",
            {"provider": provider, "events": count, "first_event_ids": first},
            TROUBLESHOOTING,
        )


def raise_tally_alerts(alerts: WebhookAlerts, tally: Tally, audited: bool) -> None:
    """The signature alerts (raised or resolved, when the audit ran) and the dead letters."""
    for provider in RETRY_WINDOWS:
        for verdict in Signature:
            count = tally.signatures[(provider, verdict.value)]
            if count:
                first = tally.first_ids(f"signature: {verdict.value}", provider)
                alerts.signature(provider, verdict, count, first)
            elif audited:
                alerts.signature_fine(provider, verdict)
        if tally.dead[provider]:
            first = tally.first_ids("dead-lettered", provider)
            alerts.dead_letters(provider, tally.dead[provider], first)


def deleted_subscriptions(tally: Tally) -> list[str]:
    """Providers whose undelivered events outlived their retries and who delete the
    subscription then (Zettle): its re-creation is the POS health sweep's."""
    return [p for p in sorted(SUBSCRIPTION_DELETED_AFTER) if tally.window_ended[p]]


def log_unchecked(shape: Shape) -> None:
    """Say in the log which checks the table's columns do not allow, and which
    recommended indexes the table lacks (each with the statement that makes it)."""
    logger = get_run_logger()
    for check, why in shape.unchecked().items():
        logger.warning("%s not run: %s", check, why)
    for index in shape.indexes:
        if not index.present:
            logger.warning(
                "%s has no index for %s: %s", shape.table, index.purpose, index.statement
            )
    for statement in shape.created:
        logger.info("Created: %s", statement)


def tally_markdown(tally: Tally, lookback_hours: int, dry_run: bool, note: str | None) -> list[str]:
    """The report's sections on the failed deliveries: the signature audit, the events
    past their provider's retries, the replay (or what it would send), and the events
    not replayed or not checked, each reason counted and the first LISTED listed."""
    lines = [
        "## Failed deliveries",
        "",
        f"{tally.events} events failed in the last {lookback_hours} hours and were "
        "never delivered.",
        "",
        "## Signature audit",
        "",
    ]
    if tally.signatures:
        lines += ["| provider | signed with | deliveries |", "|---|---|---|"]
        lines += [f"| {p} | {v} | {n} |" for (p, v), n in sorted(tally.signatures.items())]
        lines.append("")
        for verdict in Signature:
            lines += _listing(tally, f"signature: {verdict.value}")
    else:
        lines += ["No rejected signature to audit.", ""]
    windows = ", ".join(f"{p} {_hours(w)}" for p, w in RETRY_WINDOWS.items())
    lines += ["## Provider retries over", "", f"Provider retry windows: {windows}.", ""]
    if tally.window_ended:
        lines += [
            f"- {p}: {n} events only a replay from us can recover"
            for p, n in sorted(tally.window_ended.items())
        ]
        lines.append("")
        lines += _listing(tally, "provider retries over")
    else:
        lines += ["Every failed event is still within its provider's retries.", ""]
    lines += ["## Replay", ""]
    if note:
        lines += [f"_{note}_", ""]
    replayable = sum(tally.replayable.values())
    per = ", ".join(f"{p} {n}" for p, n in sorted(tally.replayable.items())) or "none"
    verb = "would be replayed" if dry_run else "were genuine and due a replay"
    lines += [f"{replayable} events {verb} ({per}).", ""]
    if dry_run:
        lines += _listing(tally, "replayable")
    else:
        for title, counter in (
            ("replayed and accepted", tally.delivered),
            ("replay failed", tally.failed),
            ("dead-lettered", tally.dead),
        ):
            lines.append(f"- {title}: {sum(counter.values())}")
        lines += [f"- not sent, {why}: {n}" for why, n in sorted(tally.skipped.items())]
        lines.append("")
        lines += _listing(tally, "replay failed") + _listing(tally, "dead-lettered")
    if tally.not_replayable:
        lines += ["## Not replayed or not checked", ""]
        lines += [f"- {why}: {n}" for why, n in sorted(tally.not_replayable.items())]
        lines.append("")
        lines += _listing(tally, "not replayable") + _listing(tally, "unchecked")
    return lines


def _listing(tally: Tally, kind: str) -> list[str]:
    rows = tally.listed.get(kind, [])
    if not rows:
        return []
    columns = list(rows[0])
    lines = [f"**{kind}** (first {LISTED}):", "", "| " + " | ".join(columns) + " |"]
    lines.append("|" + "---|" * len(columns))
    for row in rows:
        cells = [str(row.get(c, "")).replace("|", "/").replace("\n", " ") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _hours(window: timedelta) -> str:
    hours = window.total_seconds() / 3600
    return f"{hours:g} h" if hours == int(hours) else f"{hours:.1f} h"
