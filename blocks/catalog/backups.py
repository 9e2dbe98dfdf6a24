"""`ops.backup_records`: every backup's record, mirroring its manifest, for queries.

Plain functions on a SQLAlchemy engine of the ops catalog; the tasks in
`tasks/catalog.py` call them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from blocks.catalog.schema import backup_records


def start_record(
    engine: Engine,
    *,
    backup_id: str,
    kind: str,
    source: str,
    started_at: datetime,
    flow_run_id: str | None,
) -> int | None:
    """Insert a `running` record before any data moves; returns the size of the newest
    completed backup of the same kind and source, if any."""
    with engine.begin() as conn:
        previous = conn.execute(
            select(backup_records.c.size)
            .where(
                backup_records.c.kind == kind,
                backup_records.c.source == source,
                backup_records.c.status == "completed",
            )
            .order_by(backup_records.c.started_at.desc())
            .limit(1)
        ).scalar()
        conn.execute(
            insert(backup_records).values(
                id=backup_id,
                kind=kind,
                status="running",
                source=source,
                locations=[],
                started_at=started_at,
                flow_run_id=flow_run_id,
            )
        )
    return int(previous) if previous is not None else None


def finish_record(
    engine: Engine,
    backup_id: str,
    *,
    status: str,
    finished_at: datetime,
    locations: list[str] | None = None,
    size: int | None = None,
    sha256: str | None = None,
    manifest: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    """Mark a record `completed` or `failed`, with what is known at that point."""
    with engine.begin() as conn:
        started = conn.execute(
            select(backup_records.c.started_at).where(backup_records.c.id == backup_id)
        ).scalar_one()
        conn.execute(
            update(backup_records)
            .where(backup_records.c.id == backup_id)
            .values(
                status=status,
                finished_at=finished_at,
                duration_seconds=(finished_at - started).total_seconds(),
                locations=locations or [],
                size=size,
                sha256=sha256,
                manifest=manifest,
                error=error,
            )
        )


INTERRUPTED = "interrupted: its run ended before the backup finished (process killed or lost)"


def close_interrupted(engine: Engine, *, kind: str, source: str, now: datetime) -> list[str]:
    """Mark `failed` every `running` record of this kind and source; returns their ids.

    Called by a backup holding the source's lock: no other live run can be writing
    such a backup then, so a record still `running` belongs to a run that died.
    """
    return _mark_interrupted(
        engine, now, backup_records.c.kind == kind, backup_records.c.source == source
    )


def running(engine: Engine) -> list[dict[str, Any]]:
    """Every record still `running`, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(backup_records)
            .where(backup_records.c.status == "running")
            .order_by(backup_records.c.started_at)
        ).all()
    return [dict(row._mapping) for row in rows]


def close_stale(engine: Engine, *, started_before: datetime, now: datetime) -> list[str]:
    """Mark `failed` every record `running` since before `started_before`: no backup
    runs that long (its steps' time limits end it first)."""
    return _mark_interrupted(engine, now, backup_records.c.started_at < started_before)


def _mark_interrupted(engine: Engine, now: datetime, *where: Any) -> list[str]:
    with engine.begin() as conn:
        rows = conn.execute(
            update(backup_records)
            .where(backup_records.c.status == "running", *where)
            .values(status="failed", finished_at=now, error=INTERRUPTED)
            .returning(backup_records.c.id)
        ).all()
    return [row[0] for row in rows]


def read_record(engine: Engine, backup_id: str) -> dict[str, Any] | None:
    """One record as a dict, or None."""
    with engine.connect() as conn:
        row = conn.execute(select(backup_records).where(backup_records.c.id == backup_id)).first()
    return dict(row._mapping) if row is not None else None


def newest_completed(engine: Engine, kind: str) -> dict[str, Any] | None:
    """The completed backup of `kind` that finished last, whatever its source, or None."""
    with engine.connect() as conn:
        row = conn.execute(
            select(backup_records)
            .where(backup_records.c.kind == kind, backup_records.c.status == "completed")
            .order_by(backup_records.c.finished_at.desc().nulls_last())
            .limit(1)
        ).first()
    return dict(row._mapping) if row is not None else None


def newest_verified(engine: Engine, kind: str) -> dict[str, Any] | None:
    """The completed backup of `kind` taken last whose restore drill passed, or None."""
    with engine.connect() as conn:
        row = conn.execute(
            select(backup_records)
            .where(
                backup_records.c.kind == kind,
                backup_records.c.status == "completed",
                backup_records.c.verify_status == "passed",
            )
            .order_by(backup_records.c.started_at.desc())
            .limit(1)
        ).first()
    return dict(row._mapping) if row is not None else None


def last_restore_seconds(engine: Engine, kind: str) -> float | None:
    """How long the newest restore drill of a `kind` backup took, or None."""
    with engine.connect() as conn:
        value = conn.execute(
            select(backup_records.c.restore_seconds)
            .where(backup_records.c.kind == kind, backup_records.c.restore_seconds.is_not(None))
            .order_by(backup_records.c.verified_at.desc().nulls_last())
            .limit(1)
        ).scalar()
    return float(value) if value is not None else None


def record_verification(
    engine: Engine,
    backup_id: str,
    *,
    verified_at: datetime,
    status: str,
    restore_seconds: float | None,
    error: str | None,
) -> bool:
    """Store a verification's outcome; False when the catalog has no such backup."""
    with engine.begin() as conn:
        result = conn.execute(
            update(backup_records)
            .where(backup_records.c.id == backup_id)
            .values(
                verified_at=verified_at,
                verify_status=status,
                restore_seconds=restore_seconds,
                verify_error=error,
            )
        )
    return bool(result.rowcount)


def upsert_from_manifest(engine: Engine, values: dict[str, Any]) -> bool:
    """Insert or refresh one record from its manifest; True when it was new.

    Verification results already in the catalog are kept.
    """
    insert_row = pg_insert(backup_records).values(**values)
    refreshed = {k: insert_row.excluded[k] for k in values if k != "id"}
    # xmax is 0 on a row this statement inserted, not on one it updated.
    upsert = insert_row.on_conflict_do_update(
        index_elements=[backup_records.c.id], set_=refreshed
    ).returning(text("xmax = 0"))
    with engine.begin() as conn:
        return bool(conn.execute(upsert).scalar_one())


def verified_ids(engine: Engine) -> set[str]:
    """Ids of every backup whose verification passed."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(backup_records.c.id).where(backup_records.c.verify_status == "passed")
        ).scalars()
        return set(rows)


def verify_statuses(engine: Engine, ids: list[str]) -> dict[str, str | None]:
    """The verification status (`passed`, `failed` or None) of each backup in `ids`
    that the catalog knows."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(backup_records.c.id, backup_records.c.verify_status).where(
                backup_records.c.id.in_(ids)
            )
        ).all()
    return {row.id: row.verify_status for row in rows}


def forget(engine: Engine, backup_id: str) -> None:
    """Remove a deleted backup's record."""
    with engine.begin() as conn:
        conn.execute(delete(backup_records).where(backup_records.c.id == backup_id))
