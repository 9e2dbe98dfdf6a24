"""`ops.pos_health_checks` and `ops.pos_endpoint_states`: every probe of a POS health
sweep, and each provider endpoint's damped state.

The damped states live here, not in a flow's memory, so they survive restarts and a
sweep that overlaps another: `advance_states` applies one sweep's results with the rows
locked, one sweep after the other, and ignores a sweep older than the one last applied
(a late sweep never overwrites a newer state). The rules are `policy.pos_health`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Integer, func, insert, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert

from blocks.catalog.schema import pos_endpoint_states, pos_health_checks
from policy.pos_health import Damped, EndpointState, observe

Endpoint = tuple[str, str]
"""(provider, endpoint): `("square", "primary")`."""


@dataclass(frozen=True)
class Check:
    """One probe of a sweep: what was asked, whether it was fine, and how fast."""

    provider: str
    target: str
    """gateway, primary, secondary, token, subscriptions or merchants."""
    ok: bool
    checked_at: datetime
    http_status: int | None = None
    connect_ms: float | None = None
    total_ms: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def record_checks(engine: Engine, sweep_id: str, checks: Sequence[Check]) -> int:
    """Append a sweep's checks; returns how many."""
    if not checks:
        return 0
    rows = [{"sweep_id": sweep_id, **asdict(check)} for check in checks]
    with engine.begin() as conn:
        conn.execute(insert(pos_health_checks), rows)
    return len(rows)


def advance_states(
    engine: Engine, results: Mapping[Endpoint, bool], at: datetime
) -> dict[Endpoint, Damped]:
    """Apply one sweep's result per endpoint (taken at `at`) to the stored states and
    return the states after it, for those endpoints."""
    if not results:
        return {}
    table = pos_endpoint_states
    keys = sorted(results)
    with engine.begin() as conn:
        # A first sight of an endpoint creates its row (up), so that every sweep then
        # locks an existing row and overlapping sweeps queue behind each other.
        created = {
            (row.provider, row.endpoint)
            for row in conn.execute(
                pg_insert(table)
                .values(
                    [
                        {"provider": p, "endpoint": e, "state": "up", "last_sweep_at": at}
                        for p, e in keys
                    ]
                )
                .on_conflict_do_nothing()
                .returning(table.c.provider, table.c.endpoint)
            )
        }
        stored = conn.execute(
            select(table)
            .where(tuple_(table.c.provider, table.c.endpoint).in_(keys))
            .order_by(table.c.provider, table.c.endpoint)
            .with_for_update()
        ).all()
        after: dict[Endpoint, Damped] = {}
        for row in stored:
            key = (row.provider, row.endpoint)
            now = _damped(row)
            if key in created or row.last_sweep_at < at:
                now = observe(now, results[key], at)
                conn.execute(
                    table.update()
                    .where(table.c.provider == row.provider, table.c.endpoint == row.endpoint)
                    .values(
                        state=now.state.value,
                        since=now.since,
                        against=now.against,
                        last_sweep_at=at,
                    )
                )
            after[key] = now
    return after


def states(engine: Engine) -> dict[Endpoint, Damped]:
    """Every endpoint's stored damped state."""
    with engine.connect() as conn:
        return {
            (row.provider, row.endpoint): _damped(row)
            for row in conn.execute(select(pos_endpoint_states))
        }


def uptime(engine: Engine, provider: str, target: str, since: datetime) -> float | None:
    """The share of `target`'s checks of `provider` since `since` that were fine;
    None when there were none. Counted in the database, not by loading checks."""
    checks = pos_health_checks
    with engine.connect() as conn:
        share = conn.execute(
            select(func.avg(checks.c.ok.cast(Integer))).where(
                checks.c.provider == provider,
                checks.c.target == target,
                checks.c.checked_at >= since,
            )
        ).scalar()
    return None if share is None else float(share)


def _damped(row: Any) -> Damped:
    return Damped(EndpointState(row.state), row.since, int(row.against))
