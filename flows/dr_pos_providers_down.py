"""Runbook, "Disaster Recovery", Scenario 2: all POS providers down (RTO 10 min, RPO 5 min).

Response plan: verify that all providers are affected, fail over to the secondary
endpoints, escalate to the POS providers' support, notify the affected businesses. An
operator starts `dr-pos-providers-down/manual` from the UI; the run first confirms the
scenario:

- a real run or a drill runs `pos-health-sweep` now, as a subflow, and judges its
  report; a dry run runs no sweep (a sweep records checks and may move traffic) and
  judges the newest sweep in the ops catalog;
- when not every configured provider is affected, this is not the scenario: the run
  stops before it locks, asks or changes anything, names the providers that are
  affected and `pos-failover`, the flow for them, and is recorded `cancelled`.

Then it shows the plan (every call, the businesses it will tell, the escalation chain,
the recovery point) and, once approved, carries out exactly that plan:

1. `POST /admin/pos/failover` with `{"provider", "reason"}` for each provider, except
   one the gateway already routes to its secondary (so a rerun continues);
2. page: a critical `all-pos-providers-down` alert, escalated by the matrix;
3. validate service: `GET /pos/health/{provider}` until each is healthy on its
   secondary: the moment the RTO is measured to;
4. tell each affected business (an active `pos_connections` row for an affected
   provider) in one email of its own, through the alert channel's SMTP server.

Service is validated before the businesses are told: the email says feedback is
collected again, which is only true then, and a slow mail server does not count
against the RTO. The recovery point is the newest moment every provider in the plan
was last seen healthy (the sweeps' `service` checks) before the incident.

A drill runs the sweep and every step for real against scratch targets: it rehearses
all configured providers whatever the sweep found, fails over at the drill gateway
(`DR_DRILL_GATEWAY_URL`) or skips those calls, and pages and emails no one, listing
whom it would have told.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import AwareDatetime

from blocks import PlatformGateway, PosProviders, PostgresDatabase, load_block
from blocks.channels import AlertChannels
from blocks.names import (
    ALERT_CHANNELS_BLOCK,
    DR_BLOCK,
    GATEWAY_BLOCK,
    METRICS_BLOCK,
    OPS_DATABASE_BLOCK,
    PLATFORM_DATABASE_BLOCK,
    POS_PROVIDERS_BLOCK,
    POS_TOKENS_BLOCK,
    REDIS_BLOCK,
)
from blocks.postgres.businesses import BusinessToTell
from feedback_ops.errors import OpsError
from flows.alert_steps import raise_alert
from flows.business_notices import Tally, email_step, tell_businesses
from flows.dr_steps import (
    DR_HOOKS,
    RUNBOOK_SECTION,
    DrBlocks,
    DrOutcome,
    DrPlan,
    DrRecord,
    PlannedStep,
    gateway_call,
    incident_start,
    run_plan,
)
from flows.locks import system_lock
from flows.parameters import ApprovalSeconds, BlockName, Reason
from flows.pos_health_sweep import SWEEP_LOCK, SweepResult, pos_health_sweep
from policy import Severity, route
from policy.disaster_recovery import Mode, Scenario, duration, mode_of
from policy.pos_health import EndpointState
from tasks.catalog import read_pos_history, read_pos_last_healthy, record_pos_move
from tasks.notify import Alert, alert_channels
from tasks.pos import move_pos_traffic, read_gateway_pos_health
from tasks.postgres import read_businesses_to_tell

FLOW = Scenario.POS_PROVIDERS_DOWN.flow_name
ALERT_NAME = "all-pos-providers-down"
EMAIL_VARIABLE = "DR_BUSINESS_EMAIL_COLUMN"
SWEEP_WAIT_SECONDS = 300
"""A sweep takes well under a minute: how long a failover or a confirmation waits for
one that is running."""
VALIDATE_SECONDS = 120
"""How long the gateway may take to report every provider healthy on its secondary."""
VALIDATE_POLL_SECONDS = 5
SUPPORT = (
    "the runbook lists no support contact for the POS providers: reach each one's "
    "partner support, and add the contacts under the runbook's External Contacts"
)
"""Runbook, Scenario 2, step 3: "Escalate: contact POS provider support"."""


@dataclass(frozen=True)
class Verdict:
    """Whether one provider is affected, and what was seen of it, in words."""

    provider: str
    affected: bool
    seen: str


@flow(name="dr-pos-providers-down", **DR_HOOKS)
def dr_pos_providers_down(
    reason: Reason = "all_pos_providers_down",
    incident_started_at: AwareDatetime | None = None,
    dry_run: bool = True,
    drill: bool = False,
    approval_timeout_seconds: ApprovalSeconds = 1800,
    triggered_by: str = "",
    providers_block: BlockName = POS_PROVIDERS_BLOCK,
    tokens_block: BlockName = POS_TOKENS_BLOCK,
    gateway_block: BlockName = GATEWAY_BLOCK,
    redis_block: BlockName = REDIS_BLOCK,
    database_block: BlockName = PLATFORM_DATABASE_BLOCK,
    ops_database_block: BlockName = OPS_DATABASE_BLOCK,
    alert_channels_block: BlockName = ALERT_CHANNELS_BLOCK,
    metrics_block: BlockName = METRICS_BLOCK,
    dr_block: BlockName = DR_BLOCK,
) -> DrOutcome:
    """Recover from all POS providers down (runbook: Scenario 2) after an approval in the
    UI: fail each over to its secondary, page, tell the affected businesses, measuring
    the RTO and RPO achieved.

    Args:
        reason: Why, in one line: sent to the gateway with each failover.
        incident_started_at: When the incident began, with its offset; empty: when this
            run starts. The RTO is measured from it, the RPO back from it.
        dry_run: Show the plan and every call it would make, changing nothing; the
            newest sweep in the ops catalog stands in for a new one.
        drill: Every step for real against scratch targets: the failovers at the drill
            gateway (DR_DRILL_GATEWAY_URL) or skipped and listed; no page, no email.
        approval_timeout_seconds: How long the run waits for approval before it stops,
            having changed nothing.
        triggered_by: What started the run when not a person (the watchdog's trigger).
        providers_block: Name of the POS Providers block: which providers are
            configured, and what the confirming sweep checks.
        tokens_block: Name of the POS Tokens block the confirming sweep uses.
        gateway_block: Name of the Platform Gateway block: the failovers and the
            providers' health as the gateway sees it.
        redis_block: Name of the Redis block the confirming sweep reads the gateway's
            connection pools from.
        database_block: Name of the Postgres Database block of the platform's database:
            the businesses and their POS connections.
        ops_database_block: Name of the Postgres Database block of the ops catalog: the
            sweeps' checks, the DR record, the alerts.
        alert_channels_block: Name of the Alert Channels block: the page, and the email
            channel the businesses are told through.
        metrics_block: Name of the Metrics Pushgateway block the confirming sweep pushes
            its figures to.
        dr_block: Name of the Disaster Recovery block: the drill gateway, auto-proceed,
            the column of the businesses' email addresses.
    """
    now = datetime.now(UTC)
    incident = incident_start(incident_started_at, now)
    mode = mode_of(dry_run=dry_run, drill=drill)
    blocks = DrBlocks.load(gateway_block, ops_database_block, alert_channels_block, dr_block)
    configured = [
        p for p, yes in load_block(PosProviders, providers_block).configured().items() if yes
    ]
    if not configured:
        raise OpsError(f"no POS provider is configured in {providers_block!r}: none to fail over")
    # Read before the sweep: a missing column stops the run before anything changed.
    businesses = read_businesses_to_tell(
        load_block(PostgresDatabase, database_block),
        configured,
        blocks.dr.business_email_column,
        EMAIL_VARIABLE,
    )
    if mode is Mode.DRY_RUN:
        source, verdicts = _judge_catalog(blocks.ops_db, configured, now)
        source += "; a dry run runs no sweep of its own"
    else:
        swept = pos_health_sweep(
            providers_block=providers_block,
            tokens_block=tokens_block,
            gateway_block=gateway_block,
            redis_block=redis_block,
            database_block=database_block,
            ops_database_block=ops_database_block,
            alert_channels_block=alert_channels_block,
            metrics_block=metrics_block,
        )
        source, verdicts = _confirm_by_sweep(swept, configured, blocks.ops_db)
    affected = [p for p in configured if verdicts[p].affected]
    if len(affected) < len(configured) and mode is not Mode.DRILL:
        return _stop(reason, mode, incident, source, verdicts, configured, blocks, triggered_by)
    providers = configured  # all affected, or a drill rehearsing them all
    channels = alert_channels(alert_channels_block)
    plan = _plan(
        reason=reason,
        mode=mode,
        incident=incident,
        now=now,
        providers=providers,
        source=source,
        verdicts=verdicts,
        businesses=businesses,
        blocks=blocks,
        channels=channels,
    )
    tally = Tally(to_tell=len(plan.details["to_tell"]))

    def act(record: DrRecord) -> list[str]:
        details = plan.details
        gateway = blocks.action_gateway(mode)
        notes: list[str] = []
        failed = _fail_over(record, gateway, details, mode, reason)
        if mode is Mode.DRILL:
            record.skipped("page per the escalation matrix", "a drill pages no one")
        else:
            with record.step("page per the escalation matrix"):
                notes.append(_page(record, details, failed, blocks))
        if failed:
            raise OpsError(
                "the gateway did not fail over "
                + "; ".join(f"{p} ({error})" for p, error in failed.items())
            )
        if gateway is None:
            record.skipped("validate service", "no drill gateway")
            record.validated()  # a drill without a gateway has nothing more to validate
        else:
            with record.step("validate service"):
                _wait_on_secondary(gateway, details["providers"])
                record.validated()
        told = tell_businesses(record, details, mode, channels, incident, tally)
        notes.append(told)
        return notes

    outcome = run_plan(
        plan,
        blocks,
        triggered_by=triggered_by,
        approval_timeout_seconds=approval_timeout_seconds,
        act=act,
    )
    return outcome.model_copy(update={"details": outcome.details | _result(plan, tally)})


# --- confirming the scenario ---------------------------------------------------------------


def _confirm_by_sweep(
    result: SweepResult, configured: list[str], ops_db: PostgresDatabase
) -> tuple[str, dict[str, Verdict]]:
    """Judge the report of the sweep run now; when it was skipped because another sweep
    was running, wait for that one and judge what it recorded."""
    if result.skipped is None:
        return f"pos-health-sweep `{result.sweep_id}`, run now", _judge_sweep(result, configured)
    get_run_logger().info("the sweep was skipped (%s): judging the one that ran", result.skipped)
    with system_lock(SWEEP_LOCK, timeout_seconds=SWEEP_WAIT_SECONDS):
        pass  # the sweep that held the lock has recorded its checks
    source, verdicts = _judge_catalog(ops_db, configured, datetime.now(UTC))
    return f"{source} (another sweep was running: {result.skipped})", verdicts


def _judge_sweep(result: SweepResult, configured: list[str]) -> dict[str, Verdict]:
    """A provider is affected when its primary failed this sweep or is declared down,
    or the gateway does not reach it."""
    verdicts: dict[str, Verdict] = {}
    for provider in configured:
        report = result.providers.get(provider)
        if report is None:
            verdicts[provider] = Verdict(provider, False, "not in the sweep's report")
            continue
        why = []
        if report.state == "down":
            why.append("primary declared down")
        if not report.primary.startswith("ok"):
            why.append(f"primary {report.primary}")
        if report.gateway != "ok":
            why.append(report.gateway)
        seen = "; ".join(why) if why else f"up ({report.state}; primary {report.primary})"
        verdicts[provider] = Verdict(provider, bool(why), seen)
    return verdicts


def _judge_catalog(
    ops_db: PostgresDatabase, configured: list[str], now: datetime
) -> tuple[str, dict[str, Verdict]]:
    """Judge each provider as `_judge_sweep` does, from its newest checks in the ops
    catalog and its primary's damped state.

    Raises:
        OpsError: the catalog holds no sweep at all.
    """
    history = read_pos_history(ops_db, now)
    if not history.last:
        raise OpsError(
            "the ops catalog holds no POS health sweep to judge from; a dry run runs none "
            "itself: run pos-health-sweep first, or start a drill"
        )
    newest = max(history.last.values(), key=lambda check: check["checked_at"])
    age = duration(max(0.0, (now - newest["checked_at"]).total_seconds()))
    source = (
        f"the newest sweep in the ops catalog, `{newest['sweep_id']}` at "
        f"{newest['checked_at'].astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC ({age} before this run)"
    )
    verdicts: dict[str, Verdict] = {}
    for provider in configured:
        primary = history.last.get((provider, "primary"))
        gateway = history.last.get((provider, "gateway"))
        damped = history.states.get((provider, "primary"))
        why = []
        if damped is not None and damped.state is EndpointState.DOWN:
            why.append("primary declared down")
        if primary is not None and not primary["ok"]:
            why.append(f"primary {primary['error']}")
        if gateway is not None and not gateway["ok"]:
            why.append(str(gateway["error"]))
        if primary is None and gateway is None:
            seen = "never checked"
        else:
            seen = "; ".join(why) if why else "up"
        verdicts[provider] = Verdict(provider, bool(why), seen)
    return source, verdicts


def _stop(
    reason: str,
    mode: Mode,
    incident: datetime,
    source: str,
    verdicts: dict[str, Verdict],
    configured: list[str],
    blocks: DrBlocks,
    triggered_by: str,
) -> DrOutcome:
    """Not this scenario: say which flow applies, record the run `cancelled` (called
    off before any change; neither a recovery nor a declined approval) and end."""
    affected = [p for p in configured if verdicts[p].affected]
    up = [p for p in configured if not verdicts[p].affected]
    if affected:
        outcome = (
            f"not all providers are down: {_and(affected)} {_is(affected)} affected; "
            f"{_and(up)} {_is(up)} up — use pos-failover for each affected provider"
        )
    else:
        outcome = (
            f"not all providers are down: none is affected; {_and(up)} {_is(up)} up — "
            f"nothing for {FLOW} to do"
        )
    plan = DrPlan(
        scenario=Scenario.POS_PROVIDERS_DOWN,
        mode=mode,
        reason=reason,
        incident_started_at=incident,
        facts=[("confirmed by", source), *((p, verdicts[p].seen) for p in configured)],
        details={"stopped": outcome, "affected": affected, "up": up},
    )
    record = DrRecord(plan, blocks, triggered_by)
    record.finish("cancelled", outcome)
    create_markdown_artifact(
        key=f"dr-{plan.scenario.value}",
        description=f"{FLOW} ({mode.value}): stopped, not this scenario",
        markdown=plan.markdown(f"{FLOW}: stopped before any change") + f"\n\n**{outcome}.**\n",
    )
    get_run_logger().warning("%s: nothing was changed", outcome)
    return DrOutcome.of(record, outcome, providers=affected, businesses_told=0, businesses_failed=0)


def _and(names: list[str]) -> str:
    return ", ".join(names)


def _is(names: list[str]) -> str:
    return "is" if len(names) == 1 else "are"


# --- the plan ------------------------------------------------------------------------------


def _plan(
    *,
    reason: str,
    mode: Mode,
    incident: datetime,
    now: datetime,
    providers: list[str],
    source: str,
    verdicts: dict[str, Verdict],
    businesses: list[BusinessToTell],
    blocks: DrBlocks,
    channels: AlertChannels,
) -> DrPlan:
    """Every step with its exact call, the businesses to tell, the recovery point."""
    gateway = blocks.action_gateway(mode)
    on_secondary = [p for p in providers if gateway is not None and _on_secondary(gateway, p)]
    steps: list[PlannedStep] = []
    for provider in providers:
        call = gateway_call(
            f"fail over {provider}",
            gateway,
            "POST",
            "/admin/pos/failover",
            {"provider": provider, "reason": reason},
        )
        if provider in on_secondary:
            call = call.model_copy(update={"skipped": "already on its secondary endpoint"})
        steps.append(call)
    response = route(Severity.CRITICAL, now).plan
    chain = " → ".join(response.escalation) or "the on-call engineer"
    steps.append(
        PlannedStep(
            title="page per the escalation matrix",
            call=f"critical alert {ALERT_NAME} (runbook: {RUNBOOK_SECTION}) to {chain}",
            skipped="a drill pages no one" if mode is Mode.DRILL else None,
        )
    )
    if gateway is None:
        validate = gateway_call("validate service", None, "GET", "/pos/health/{provider}")
    else:
        validate = PlannedStep(
            title="validate service",
            call="; ".join(f"GET {gateway.base_url()}/pos/health/{p}" for p in providers)
            + ": each healthy on its secondary endpoint",
        )
    steps.append(validate)
    to_tell = [b for b in businesses if b.email]
    steps.append(email_step(mode, channels, len(to_tell)))

    recovery_point, last_seen = _recovery_point(blocks.ops_db, providers, incident)
    column = blocks.dr.business_email_column
    facts: list[tuple[str, str]] = [("confirmed by", source)]
    for provider in providers:
        where = " (traffic already on its secondary)" if provider in on_secondary else ""
        facts.append((provider, verdicts[provider].seen + where))
    if mode is Mode.DRILL:
        facts.append(
            (
                "drill",
                "rehearses every configured provider whatever the sweep found; no page, no email",
            )
        )
    facts += [
        (
            "affected businesses",
            f"{len(businesses)} with an active connection to {_and(providers)}; "
            f"{len(to_tell)} with an email address in businesses.{column}",
        ),
        ("page", f"critical: {chain} ({response.reason})"),
        ("POS provider support", SUPPORT),
        ("recovery point", _point_words(recovery_point, last_seen)),
    ]
    return DrPlan(
        scenario=Scenario.POS_PROVIDERS_DOWN,
        mode=mode,
        reason=reason,
        incident_started_at=incident,
        recovery_point=recovery_point,
        facts=facts,
        steps=steps,
        details={
            "providers": providers,
            "on_secondary": on_secondary,
            "seen": {p: verdicts[p].seen for p in providers},
            "to_tell": [
                {"business_id": b.business_id, "email": b.email, "providers": list(b.providers)}
                for b in to_tell
            ],
            "without_email": [b.business_id for b in businesses if not b.email],
            "escalation": list(response.escalation),
        },
    )


def _on_secondary(gateway: PlatformGateway, provider: str) -> bool:
    """Whether the gateway says it routes the provider to its secondary endpoint now."""
    return read_gateway_pos_health(gateway, provider).detail.get("endpoint") == "secondary"


def _recovery_point(
    ops_db: PostgresDatabase, providers: list[str], incident: datetime
) -> tuple[datetime | None, dict[str, datetime | None]]:
    """The newest moment every provider was last seen healthy before the incident: the
    earliest of their last good `service` checks; None when one was never seen so."""
    seen = read_pos_last_healthy(ops_db, providers, incident)
    known = [at for at in seen.values() if at is not None]
    if not known or len(known) < len(seen):
        return None, seen
    return min(known), seen


def _point_words(point: datetime | None, seen: dict[str, datetime | None]) -> str:
    each = ", ".join(
        f"{p} {at.astimezone(UTC):%H:%M:%S}" if at else f"{p} never" for p, at in seen.items()
    )
    if point is None:
        return f"unknown: not every provider was seen healthy before the incident ({each})"
    return f"{point.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC, last seen healthy: {each} UTC"


# --- the steps -----------------------------------------------------------------------------


def _fail_over(
    record: DrRecord,
    gateway: PlatformGateway | None,
    details: dict[str, Any],
    mode: Mode,
    reason: str,
) -> dict[str, str]:
    """Fail each provider over, as planned; returns those the gateway refused, with why.
    Every provider is tried, whatever happened to the one before."""
    failed: dict[str, str] = {}
    if gateway is None:
        for provider in details["providers"]:
            record.skipped(f"fail over {provider}", "no drill gateway")
        return failed
    with _sweep_paused(mode):
        for provider in details["providers"]:
            title = f"fail over {provider}"
            if provider in details["on_secondary"]:
                record.skipped(title, "already on its secondary endpoint")
                continue
            try:
                with record.step(title):
                    answer = move_pos_traffic(gateway, provider, reason)
            except Exception as exc:  # the others are failed over all the same
                failed[provider] = str(exc).splitlines()[0] if str(exc) else repr(exc)
                continue
            if mode is Mode.REAL:  # the sweep reads where the platform's traffic is
                record_pos_move(
                    record.blocks.ops_db,
                    provider=provider,
                    direction="failover",
                    reason=reason,
                    requested_by=f"{FLOW}: {record.row.get('approved_by') or 'approved'}",
                    at=datetime.now(UTC),
                    flow_run_id=record.flow_run_id,
                    checks={"dr": details["seen"].get(provider)},
                    gateway_answer=answer,
                )
    return failed


@contextmanager
def _sweep_paused(mode: Mode) -> Iterator[None]:
    """In a real run, hold the sweep's lock while the traffic moves, as pos-failover
    does: a sweep running now would decide on what it saw before."""
    if mode is not Mode.REAL:
        yield
        return
    with system_lock(SWEEP_LOCK, timeout_seconds=SWEEP_WAIT_SECONDS):
        yield


def _page(
    record: DrRecord, details: dict[str, Any], failed: dict[str, str], blocks: DrBlocks
) -> str:
    """The critical alert, escalated by the matrix; a page that reached no one is kept
    for the escalation sweep and noted, not a reason to stop the recovery."""
    providers = details["providers"]
    moved = [p for p in providers if p not in details["on_secondary"] and p not in failed]
    done = (
        f"failing over {_and(list(failed))} failed"
        if failed
        else "each is failed over to its secondary endpoint"
    )
    alert = Alert(
        name=ALERT_NAME,
        severity=Severity.CRITICAL,
        summary=f"All POS providers are down ({_and(providers)}): {done}; "
        f"{len(details['to_tell']) + len(details['without_email'])} businesses affected. "
        "Contact each provider's support.",
        details={
            "providers": details["seen"],
            "failed_over": moved,
            "already_on_secondary": details["on_secondary"],
            "failover_failed": failed,
            "pos_provider_support": SUPPORT,
            "flow_run": record.flow_run_id,
        },
        dedup_key=ALERT_NAME,
        source_flow_run=record.flow_run_id,
        runbook_section=RUNBOOK_SECTION,
    )
    try:
        outcome = raise_alert(alert, targets=blocks.targets)
    except OpsError as exc:
        return f"the page reached no one ({exc})"
    chain = " → ".join(details["escalation"])
    return f"paged ({outcome.status}): {ALERT_NAME}, escalating {chain}"


def _wait_on_secondary(gateway: PlatformGateway, providers: list[str]) -> None:
    """`GET /pos/health/{provider}` until each is healthy and not on its primary.

    Raises:
        OpsError: not so within VALIDATE_SECONDS; the message says what each answered.
    """
    deadline = time.monotonic() + VALIDATE_SECONDS
    waiting = list(providers)
    while True:
        why: dict[str, str] = {}
        for provider in waiting:
            seen = read_gateway_pos_health(gateway, provider)
            endpoint = seen.detail.get("endpoint")
            if not seen.ok:
                why[provider] = seen.error or "unhealthy"
            elif endpoint == "primary":
                why[provider] = "healthy, but on its primary endpoint"
        if not why:
            return
        if time.monotonic() >= deadline:
            raise OpsError(
                f"not healthy on the secondary after {VALIDATE_SECONDS} s: "
                + "; ".join(f"{p}: {reason}" for p, reason in why.items())
            )
        waiting = list(why)
        time.sleep(VALIDATE_POLL_SECONDS)  # the gateway offers nothing to wait on


def _result(plan: DrPlan, tally: Tally) -> dict[str, Any]:
    """The figures `DrOutcome.details` carries for this scenario."""
    details = plan.details
    return {
        "providers": details["providers"],
        "businesses_told": len(tally.told),
        "businesses_failed": len(tally.failed),
        "businesses_without_email": len(details["without_email"]),
        "businesses_to_tell": tally.to_tell,
        "not_told": [b for b, _ in tally.failed][:100] + details["without_email"][:100],
    }


__all__ = ["ALERT_NAME", "Verdict", "dr_pos_providers_down"]
