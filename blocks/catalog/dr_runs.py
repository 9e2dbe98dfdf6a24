"""`ops.dr_runs` and `ops.dr_maintenance`: what each DR run did and achieved, and which
run turned the platform's maintenance mode on.

A DR run writes its row as it goes, so a run that dies leaves what it had done; the
maintenance rows are written before the gateway is asked and closed after it answered,
so whichever process cleans up (the flow, its failure hook, or the serving process's
cancellation hook) knows from here, and only from here, what is still to undo.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from blocks.catalog.schema import dr_maintenance, dr_runs

FINISHED = ("completed", "failed", "declined", "cancelled")


def save_run(engine: Engine, row: dict[str, Any]) -> None:
    """Insert or update the run's row (`flow_run_id` is the key); the fields given win.

    A finished row is never reopened: a hook that runs after the flow recorded its end
    must not overwrite it.
    """
    statement = pg_insert(dr_runs).values(**row)
    changes = {k: statement.excluded[k] for k in row if k != "flow_run_id"}
    with engine.begin() as conn:
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=[dr_runs.c.flow_run_id],
                set_=changes,
                where=dr_runs.c.status.not_in(FINISHED),
            )
        )


def close_run(engine: Engine, flow_run_id: str, *, status: str, at: datetime, error: str) -> bool:
    """End a run's row that is not finished yet (a hook after a cancellation or a crash);
    returns whether there was one to end.

    A cancellation also replaces `failed`, keeping the first end's time: Prefect tells a
    run's process of its cancellation only best-effort, so the runner's kill can reach
    it as a crash (its own hook, or a step, records `failed`), and the serving process's
    hook, which knows the run was cancelled, comes after.
    """
    endable: ColumnElement[bool] = dr_runs.c.status.not_in(FINISHED)
    if status == "cancelled":
        endable = or_(endable, dr_runs.c.status == "failed")
    with engine.begin() as conn:
        result = conn.execute(
            update(dr_runs)
            .where(dr_runs.c.flow_run_id == flow_run_id, endable)
            .values(
                status=status, finished_at=func.coalesce(dr_runs.c.finished_at, at), error=error
            )
        )
    return bool(result.rowcount)


def read_run(engine: Engine, flow_run_id: str) -> dict[str, Any] | None:
    """The run's row, or None."""
    with engine.connect() as conn:
        row = conn.execute(select(dr_runs).where(dr_runs.c.flow_run_id == flow_run_id)).first()
    return dict(row._mapping) if row is not None else None


def running_runs(engine: Engine, scenario: str) -> list[dict[str, Any]]:
    """Rows of the scenario still `running` (a real run or a drill), oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(dr_runs)
            .where(dr_runs.c.scenario == scenario, dr_runs.c.status == "running")
            .order_by(dr_runs.c.started_at)
        ).all()
    return [dict(r._mapping) for r in rows]


def history(engine: Engine, limit: int = 200) -> list[dict[str, Any]]:
    """The newest `limit` rows, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(dr_runs).order_by(dr_runs.c.started_at.desc()).limit(limit)
        ).all()
    return [dict(r._mapping) for r in rows]


def maintenance_opened(
    engine: Engine, *, flow_run_id: str, gateway_url: str, reason: str, at: datetime
) -> None:
    """Note, before asking the gateway, that this run turns maintenance mode on there
    (once: a retry or a rerun of the step adds no second row)."""
    with engine.begin() as conn:
        present = conn.execute(
            select(dr_maintenance.c.id).where(
                dr_maintenance.c.flow_run_id == flow_run_id,
                dr_maintenance.c.gateway_url == gateway_url,
                dr_maintenance.c.turned_off_at.is_(None),
            )
        ).first()
        if present is None:
            conn.execute(
                dr_maintenance.insert().values(
                    flow_run_id=flow_run_id, gateway_url=gateway_url, reason=reason, turned_on_at=at
                )
            )


def open_maintenance(engine: Engine, gateway_url: str | None = None) -> list[dict[str, Any]]:
    """Maintenance turned on by DR runs and not yet off, oldest first; at one gateway
    when `gateway_url` is given."""
    query = select(dr_maintenance).where(dr_maintenance.c.turned_off_at.is_(None))
    if gateway_url is not None:
        query = query.where(dr_maintenance.c.gateway_url == gateway_url)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(dr_maintenance.c.turned_on_at)).all()
    return [dict(r._mapping) for r in rows]


def maintenance_closed(
    engine: Engine, gateway_url: str, at: datetime, error: str | None = None
) -> int:
    """Close every open row at the gateway: maintenance is off there (`error` None), or
    turning it off failed (the rows stay open with the error). Returns rows closed."""
    with engine.begin() as conn:
        if error is not None:
            conn.execute(
                update(dr_maintenance)
                .where(
                    dr_maintenance.c.gateway_url == gateway_url,
                    dr_maintenance.c.turned_off_at.is_(None),
                )
                .values(off_error=error)
            )
            return 0
        result = conn.execute(
            update(dr_maintenance)
            .where(
                dr_maintenance.c.gateway_url == gateway_url,
                dr_maintenance.c.turned_off_at.is_(None),
            )
            .values(turned_off_at=at, off_error=None)
        )
        return int(result.rowcount or 0)
