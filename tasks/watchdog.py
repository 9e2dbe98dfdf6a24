"""Tasks of the DR watchdog: observe the primary region (the gateway's `/health`, which
also reports the error rate) and the platform's database, keep the observations and the
live triggers in the ops catalog (`ops.dr_observations`, `ops.dr_triggers`), and emit the
Prefect event that starts a DR run.

An observation is one sample: it is never retried, and a failure to reach the system
is not an error of the step but what it observed (the gateway's `attempts` are cut to
one and its timeout to PROBE_SECONDS, so a watchdog run ends well inside its minute).
Only a configuration error (no GATEWAY_URL) fails the step: a watchdog that cannot know
where to look must say so, not report the region unavailable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from prefect.events import emit_event

from blocks.catalog import dr_runs, dr_watch, opened
from blocks.gateway import PlatformGateway
from blocks.gateway.client import GatewayClient
from blocks.postgres import PostgresDatabase
from blocks.postgres.client import connect
from feedback_ops.errors import ConfigError, OpsError
from policy.dr_triggers import (
    DATABASE_CHECK,
    ERROR_RATE_CHECK,
    ERROR_RATE_OVER,
    PRIMARY_REGION_CHECK,
    Finding,
    Observation,
    judge,
)
from tasks import QUICK, SWEEP_RETRY_DELAYS, step
from tasks.pos import HEALTHY_WORDS

PROBE_SECONDS = 10
"""The longest an observation waits for an answer (less when the block says less)."""
DATABASE_PROBE_SECONDS = 5
"""The database's: libpq's `connect_timeout` and the server's `statement_timeout`."""


@step("observe-primary-region", limit=QUICK, retries=0)
def observe_primary_region(gateway: PlatformGateway, at: datetime) -> list[Observation]:
    """`GET /health` once: whether the primary region answers healthy, and the error
    rate it reports (`error_rate`, a fraction 0..1; unknown when missing or not one).

    Raises:
        ConfigError: no gateway URL is configured.
    """
    one_try = gateway.model_copy(
        update={"attempts": 1, "timeout_seconds": min(gateway.timeout_seconds, PROBE_SECONDS)}
    )
    started = time.monotonic()
    try:
        with GatewayClient(one_try) as client:
            answer = client.health()
    except ConfigError:
        raise
    except OpsError as exc:
        detail = {"error": str(exc), "http_status": getattr(exc, "status", None)}
        detail["ms"] = _ms_since(started)
        return [
            Observation(PRIMARY_REGION_CHECK, at, False, detail=detail),
            Observation(ERROR_RATE_CHECK, at, False, detail={"error": "no /health answer"}),
        ]
    healthy, status = _healthy(answer)
    region: dict[str, Any] = {"status": status, "http_status": 200, "ms": _ms_since(started)}
    if answer.get("maintenance") is True:
        region["maintenance"] = True
    if not healthy:
        region["error"] = f"gateway: GET /health answered status {status!r}, not healthy"
    rate, why = _error_rate(answer.get("error_rate"))
    rate_detail = {"error": why} if why else {}
    return [
        Observation(PRIMARY_REGION_CHECK, at, healthy, detail=region),
        Observation(
            ERROR_RATE_CHECK, at, rate is not None and rate <= ERROR_RATE_OVER, rate, rate_detail
        ),
    ]


def _healthy(answer: dict[str, Any]) -> tuple[bool, str]:
    """Whether a `/health` answer says healthy (a `healthy` flag, or a `status` word),
    and its status as shown."""
    flag = answer.get("healthy")
    status = answer.get("status")
    shown = str(status) if status is not None else str(flag)
    if isinstance(flag, bool):
        return flag, shown
    return isinstance(status, str) and status.lower() in HEALTHY_WORDS, shown


def _error_rate(raw: object) -> tuple[float | None, str | None]:
    """The reported error rate as a fraction, or None and why not."""
    if raw is None:
        return None, "GET /health reports no error_rate"
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= 1:
        return None, f"GET /health reports error_rate {str(raw)[:40]!r}, not a fraction 0..1"
    return float(raw), None


@step("observe-database", limit=QUICK, retries=0)
def observe_database(db: PostgresDatabase, at: datetime) -> Observation:
    """One connection to the platform's database and `SELECT 1`, each within
    DATABASE_PROBE_SECONDS; any failure is a failed observation with its reason."""
    seconds = min(db.connect_timeout, DATABASE_PROBE_SECONDS)
    quick = db.model_copy(update={"connect_timeout": seconds})
    detail: dict[str, Any] = {"database": db.display_name}
    started = time.monotonic()
    try:
        with connect(quick, options=f"-c statement_timeout={seconds * 1000}") as conn:
            conn.execute("SELECT 1").fetchone()
    except (OpsError, psycopg.Error, OSError) as exc:
        reason = str(exc) if isinstance(exc, OpsError) else " ".join(str(exc).split())[:300]
        detail.update(error=reason, ms=_ms_since(started))
        return Observation(DATABASE_CHECK, at, False, detail=detail)
    detail["ms"] = _ms_since(started)
    return Observation(DATABASE_CHECK, at, True, detail=detail)


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


@step("record-dr-observations", limit=QUICK, retries=0)
def record_dr_observations(
    ops_db: PostgresDatabase, observations: list[Observation], flow_run_id: str | None
) -> int:
    """Append the run's observations to `ops.dr_observations` (and drop those older than
    two days). Not retried: a repeated failure would count twice towards a trigger."""
    with opened(ops_db) as engine:
        return dr_watch.record_observations(engine, observations, flow_run_id)


@dataclass(frozen=True)
class Judgement:
    """The triggers judged at one moment, with what the catalog holds about them.

    Attributes:
        findings: One per trigger, in `policy.dr_triggers.TRIGGERS` order.
        live: The live row of each trigger that has fired and not cleared, by name.
        maintenance: The DR runs that have the gateway's maintenance mode on now.
    """

    findings: list[Finding]
    live: dict[str, dict[str, Any]] = field(default_factory=dict)
    maintenance: list[dict[str, Any]] = field(default_factory=list)


@step("judge-dr-triggers", limit=QUICK, retry_delays=SWEEP_RETRY_DELAYS)
def judge_dr_triggers(ops_db: PostgresDatabase, at: datetime) -> Judgement:
    """Read the recent observations and the live triggers, and judge every trigger at
    `at` by `policy.dr_triggers`."""
    with opened(ops_db) as engine:
        observations = dr_watch.recent_observations(engine, at)
        live = dr_watch.live_triggers(engine)
        maintenance = dr_runs.open_maintenance(engine)
    return Judgement(judge(observations, at), live, maintenance)


@step("fire-dr-trigger", limit=QUICK, retries=0)
def fire_dr_trigger(
    ops_db: PostgresDatabase, finding: Finding, at: datetime, flow_run_id: str | None
) -> tuple[dict[str, Any], bool]:
    """Make the trigger live in `ops.dr_triggers`, once; returns its row and whether
    this call fired it (False: already live). Not retried: the live row guards it."""
    detail = {
        "why": finding.why,
        "since": finding.since.isoformat() if finding.since else None,
        "observed_at": finding.observed_at.isoformat() if finding.observed_at else None,
    }
    with opened(ops_db) as engine:
        return dr_watch.fire(
            engine,
            trigger=finding.trigger,
            scenario=finding.scenario.value,
            fired_at=at,
            detail=detail,
            flow_run_id=flow_run_id,
        )


@step("emit-dr-event", limit=QUICK, retries=0)
def emit_dr_event(
    event: str,
    resource: dict[str, str],
    payload: dict[str, Any],
    related: list[dict[str, str]],
) -> str | None:
    """Emit the Prefect event that an automation turns into the DR run; returns its
    id, or None when this process sends Prefect no events (no API configured).

    Not retried: a second event would start a second DR run."""
    emitted = emit_event(event=event, resource=resource, payload=payload, related=related)
    return str(emitted.id) if emitted is not None else None


@step("record-dr-event", limit=QUICK, retry_delays=SWEEP_RETRY_DELAYS)
def record_dr_event(ops_db: PostgresDatabase, trigger_id: int, event_id: str) -> None:
    """Note the emitted event's id on the trigger's row."""
    with opened(ops_db) as engine:
        dr_watch.set_event(engine, trigger_id, event_id)


@step("clear-dr-trigger", limit=QUICK, retry_delays=SWEEP_RETRY_DELAYS)
def clear_dr_trigger(
    ops_db: PostgresDatabase, trigger: str, at: datetime, why: str
) -> dict[str, Any] | None:
    """Close the trigger's live row: it no longer holds. Returns the closed row, or None
    when it was not live (cleared by an overlapping run)."""
    with opened(ops_db) as engine:
        return dr_watch.clear(engine, trigger, at, why)


__all__ = [
    "DATABASE_PROBE_SECONDS",
    "PROBE_SECONDS",
    "Judgement",
    "clear_dr_trigger",
    "emit_dr_event",
    "fire_dr_trigger",
    "judge_dr_triggers",
    "observe_database",
    "observe_primary_region",
    "record_dr_event",
    "record_dr_observations",
]
