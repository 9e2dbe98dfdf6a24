"""`ops.dr_observations` and `ops.dr_triggers`: what `dr-watchdog` saw each minute, and
each automated failover trigger while it holds.

The observations live here, not in a flow's memory, so a trigger is judged across runs
(five minutes of an unavailable region are five runs). A trigger fires once: `fire`
inserts its live row, and the partial unique index `dr_triggers_live` refuses a second
live row for the same trigger, so an overlapping run finds it "already live" instead of
starting a second DR run. `clear` closes the live row when the trigger no longer holds.
The rules are `policy.dr_triggers`'.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from blocks.catalog.schema import dr_observations, dr_triggers
from policy.dr_triggers import LOOKBACK, Observation

KEEP_OBSERVATIONS = timedelta(days=2)
"""Observations are kept this long: a day of them to look back on, and a margin. The
triggers need only LOOKBACK."""
NEWEST_PER_CHECK = 60
"""At most this many observations per check are read back: a watchdog run every minute
makes 15 in LOOKBACK; the cap guards against a runaway writer."""

LIVE = dr_triggers.c.cleared_at.is_(None)


def record_observations(
    engine: Engine, observations: Sequence[Observation], flow_run_id: str | None
) -> int:
    """Append observations, and drop those older than KEEP_OBSERVATIONS before the
    newest of them; returns how many were appended."""
    if not observations:
        return 0
    rows = [
        {
            "observed_at": seen.observed_at,
            "check_name": seen.check,
            "ok": seen.ok,
            "value": seen.value,
            "detail": dict(seen.detail),
            "flow_run_id": flow_run_id,
        }
        for seen in observations
    ]
    with engine.begin() as conn:
        conn.execute(insert(dr_observations), rows)
    prune_observations(engine, max(seen.observed_at for seen in observations) - KEEP_OBSERVATIONS)
    return len(rows)


def prune_observations(engine: Engine, before: datetime) -> int:
    """Delete the observations older than `before`; returns how many."""
    with engine.begin() as conn:
        gone = conn.execute(delete(dr_observations).where(dr_observations.c.observed_at < before))
    return int(gone.rowcount or 0)


def recent_observations(
    engine: Engine, now: datetime, lookback: timedelta = LOOKBACK
) -> list[Observation]:
    """Each check's observations in (now - lookback, now], at most NEWEST_PER_CHECK of
    each (the newest), oldest first."""
    table = dr_observations
    newest_first = (
        func.row_number()
        .over(
            partition_by=table.c.check_name,
            order_by=(table.c.observed_at.desc(), table.c.id.desc()),
        )
        .label("newest_first")
    )
    ranked = (
        select(table, newest_first)
        .where(table.c.observed_at > now - lookback, table.c.observed_at <= now)
        .subquery()
    )
    query = (
        select(ranked)
        .where(ranked.c.newest_first <= NEWEST_PER_CHECK)
        .order_by(ranked.c.observed_at, ranked.c.id)
    )
    with engine.connect() as conn:
        return [
            Observation(
                check=row.check_name,
                observed_at=row.observed_at,
                ok=row.ok,
                value=row.value,
                detail=dict(row.detail or {}),
            )
            for row in conn.execute(query)
        ]


def live_triggers(engine: Engine) -> dict[str, dict[str, Any]]:
    """The live (not cleared) row of each trigger that has one, by trigger name."""
    with engine.connect() as conn:
        rows = conn.execute(select(dr_triggers).where(LIVE)).all()
    return {row.trigger: dict(row._mapping) for row in rows}


def fire(
    engine: Engine,
    *,
    trigger: str,
    scenario: str,
    fired_at: datetime,
    detail: dict[str, Any],
    flow_run_id: str | None,
) -> tuple[dict[str, Any], bool]:
    """Make the trigger live, once.

    Returns:
        The live row, and whether this call made it live (False: it was already live,
        fired by an earlier or overlapping run, and nothing is to be done again).
    """
    with engine.begin() as conn:
        row = conn.execute(
            pg_insert(dr_triggers)
            .values(
                trigger=trigger,
                scenario=scenario,
                fired_at=fired_at,
                detail=detail,
                flow_run_id=flow_run_id,
            )
            .on_conflict_do_nothing(index_elements=[dr_triggers.c.trigger], index_where=LIVE)
            .returning(dr_triggers)
        ).first()
        if row is not None:
            return dict(row._mapping), True
        live = conn.execute(select(dr_triggers).where(dr_triggers.c.trigger == trigger, LIVE)).one()
    return dict(live._mapping), False


def set_event(engine: Engine, trigger_id: int, event_id: str) -> None:
    """Note the Prefect event that a fired trigger emitted."""
    with engine.begin() as conn:
        conn.execute(
            update(dr_triggers).where(dr_triggers.c.id == trigger_id).values(event_id=event_id)
        )


def clear(engine: Engine, trigger: str, cleared_at: datetime, why: str) -> dict[str, Any] | None:
    """Close the trigger's live row, if it has one: it no longer holds (`why`). Returns
    the row as closed, or None when nothing was live."""
    with engine.begin() as conn:
        row = conn.execute(
            update(dr_triggers)
            .where(dr_triggers.c.trigger == trigger, LIVE)
            .values(
                cleared_at=cleared_at,
                detail=dr_triggers.c.detail.op("||")(func.jsonb_build_object("cleared_why", why)),
            )
            .returning(dr_triggers)
        ).first()
    return dict(row._mapping) if row is not None else None
