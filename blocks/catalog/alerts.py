"""`ops.alerts` and `ops.alert_deliveries`: who was told what, when.

Plain functions on a SQLAlchemy engine of the ops catalog; `tasks/notify.py` calls
them. One live alert per dedup key is enforced by a partial unique index, so raising
the same condition twice counts an occurrence instead of paging again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from blocks.catalog.schema import alert_deliveries, alerts
from feedback_ops.errors import OpsError

LIVE = alerts.c.status != "resolved"


def open_or_count(engine: Engine, values: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Insert a new live alert, or count one more occurrence of the live one.

    Returns:
        The alert's row, and whether it is new (and so must be sent).
    """
    for _attempt in range(3):
        with engine.begin() as conn:
            live = conn.execute(
                select(alerts)
                .where(alerts.c.dedup_key == values["dedup_key"], LIVE)
                .with_for_update()
            ).first()
            if live is not None:
                row = conn.execute(
                    update(alerts)
                    .where(alerts.c.id == live.id)
                    .values(
                        occurrences=alerts.c.occurrences + 1,
                        last_seen_at=values["last_seen_at"],
                    )
                    .returning(alerts)
                ).one()
                return dict(row._mapping), False
            try:
                with conn.begin_nested():
                    row = conn.execute(insert(alerts).values(**values).returning(alerts)).one()
            except IntegrityError:
                continue  # raised at the same moment elsewhere: count it on the next pass
            return dict(row._mapping), True
    raise OpsError(f"could not record alert {values['dedup_key']!r}: it kept changing")


def record_delivery(engine: Engine, **values: Any) -> None:
    """Append one delivery attempt's outcome."""
    with engine.begin() as conn:
        conn.execute(insert(alert_deliveries).values(**values))


def update_alert(engine: Engine, alert_id: int, **values: Any) -> dict[str, Any]:
    """Change an alert's columns; returns the row as it is now."""
    with engine.begin() as conn:
        row = conn.execute(
            update(alerts).where(alerts.c.id == alert_id).values(**values).returning(alerts)
        ).one()
    return dict(row._mapping)


def find_live(engine: Engine, dedup_key: str) -> dict[str, Any] | None:
    """The live (not resolved) alert with this dedup key, if any."""
    with engine.connect() as conn:
        row = conn.execute(select(alerts).where(alerts.c.dedup_key == dedup_key, LIVE)).first()
    return dict(row._mapping) if row is not None else None


def live_keys(engine: Engine, prefix: str) -> set[str]:
    """The dedup keys starting with `prefix` that have a live alert."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(alerts.c.dedup_key).where(alerts.c.dedup_key.startswith(prefix), LIVE)
        )
        return {str(key) for (key,) in rows}


def live_by_severity(engine: Engine) -> dict[str, int]:
    """How many alerts are live (open, queued or acknowledged), by severity; a severity
    without any is left out."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(alerts.c.severity, func.count()).where(LIVE).group_by(alerts.c.severity)
        ).all()
    return {str(severity): int(count) for severity, count in rows}


def due(engine: Engine, now: datetime) -> list[dict[str, Any]]:
    """Alerts whose next step is due: escalation of an open, unacknowledged alert,
    sending a queued one, or sending again one that reached no one."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(alerts)
            .where(
                alerts.c.status.in_(("open", "queued")),
                (alerts.c.next_escalation_at <= now)
                | ((alerts.c.status == "queued") & (alerts.c.respond_by <= now))
                | ((alerts.c.status == "open") & ~alerts.c.delivered),
            )
            .order_by(alerts.c.raised_at)
        ).all()
    return [dict(row._mapping) for row in rows]


def deliveries_of(engine: Engine, alert_id: int) -> Sequence[dict[str, Any]]:
    """Every delivery attempt of an alert, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(alert_deliveries)
            .where(alert_deliveries.c.alert_id == alert_id)
            .order_by(alert_deliveries.c.id)
        ).all()
    return [dict(row._mapping) for row in rows]
