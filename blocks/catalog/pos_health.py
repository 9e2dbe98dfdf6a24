"""`ops.pos_health_checks`, `ops.pos_endpoint_states` and `ops.pos_failovers`: every
probe of a POS health sweep, each provider endpoint's damped state, and every move of
a provider's traffic between its endpoints.

The damped states live here, not in a flow's memory, so they survive restarts and a
sweep that overlaps another: `advance_states` applies one sweep's results with the rows
locked, one sweep after the other, and ignores a sweep older than the one last applied
(a late sweep never overwrites a newer state). The rules are `policy.pos_health`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Integer, delete, func, insert, select, tuple_
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.dialects.postgresql import insert as pg_insert

from blocks.catalog.schema import pos_endpoint_states, pos_failovers, pos_health_checks
from policy.pos_health import Damped, EndpointState, observe

Endpoint = tuple[str, str]
"""(provider, endpoint): `("square", "primary")`."""


@dataclass(frozen=True)
class Check:
    """One probe of a sweep: what was asked, whether it was fine, and how fast."""

    provider: str
    target: str
    """gateway, primary, secondary, service (the endpoint in use), token, subscriptions
    or merchants."""
    ok: bool
    checked_at: datetime
    http_status: int | None = None
    connect_ms: float | None = None
    total_ms: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


KEEP_CHECKS = timedelta(days=35)
"""Checks are kept this long: the SLO's longest window (30 days) and a margin."""


def record_checks(engine: Engine, sweep_id: str, checks: Sequence[Check]) -> int:
    """Append a sweep's checks, and drop those older than KEEP_CHECKS before the newest
    of them; returns how many were appended."""
    if not checks:
        return 0
    rows = [{"sweep_id": sweep_id, **asdict(check)} for check in checks]
    oldest = max(check.checked_at for check in checks) - KEEP_CHECKS
    with engine.begin() as conn:
        conn.execute(insert(pos_health_checks), rows)
        conn.execute(delete(pos_health_checks).where(pos_health_checks.c.checked_at < oldest))
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


def record_move(
    engine: Engine,
    *,
    provider: str,
    direction: str,
    reason: str,
    requested_by: str,
    at: datetime,
    flow_run_id: str | None,
    checks: Mapping[str, Any],
    gateway_answer: Mapping[str, Any],
) -> None:
    """Note a failover or failback the gateway accepted."""
    with engine.begin() as conn:
        conn.execute(
            insert(pos_failovers).values(
                provider=provider,
                direction=direction,
                reason=reason,
                requested_by=requested_by,
                at=at,
                flow_run_id=flow_run_id,
                checks=dict(checks),
                gateway_answer=dict(gateway_answer),
            )
        )


def last_moves(engine: Engine) -> dict[str, dict[str, Any]]:
    """Each provider's latest failover or failback (providers never moved left out)."""
    table = pos_failovers
    latest = (
        select(table)
        .ext(distinct_on(table.c.provider))
        .order_by(table.c.provider, table.c.at.desc(), table.c.id.desc())
    )
    with engine.connect() as conn:
        return {row.provider: dict(row._mapping) for row in conn.execute(latest)}


def last_checks(engine: Engine) -> dict[tuple[str, str], dict[str, Any]]:
    """The newest check of each (provider, target)."""
    table = pos_health_checks
    newest = (
        select(table)
        .ext(distinct_on(table.c.provider, table.c.target))
        .order_by(table.c.provider, table.c.target, table.c.checked_at.desc(), table.c.id.desc())
    )
    with engine.connect() as conn:
        return {(row.provider, row.target): dict(row._mapping) for row in conn.execute(newest)}


UPTIME_WINDOWS = {"1d": 1, "7d": 7, "30d": 30}
"""The SLO's windows, in days: "POS Connectivity > 99% uptime"."""
SERVICE = "service"
"""The check of the endpoint a provider's traffic is on: what uptime is counted from."""


@dataclass(frozen=True)
class PosHistory:
    """What the catalog knows of each provider beyond one sweep.

    Attributes:
        states: Every endpoint's damped state.
        moves: Each provider's latest failover or failback.
        uptime: Per provider, the share of good `service` checks per window (None:
            no check in it).
        last: The newest check per (provider, target).
    """

    states: dict[Endpoint, Damped]
    moves: dict[str, dict[str, Any]]
    uptime: dict[str, dict[str, float | None]]
    last: dict[tuple[str, str], dict[str, Any]]

    def failed_over(self, provider: str) -> bool:
        """Whether the provider's last move sent it to its secondary."""
        return self.moves.get(provider, {}).get("direction") == "failover"


def uptimes(engine: Engine, at: datetime) -> dict[str, dict[str, float | None]]:
    """Each provider's uptime per window before `at`, counted in the database."""
    checks = pos_health_checks
    found: dict[str, dict[str, float | None]] = {}
    with engine.connect() as conn:
        for window, days in UPTIME_WINDOWS.items():
            rows = conn.execute(
                select(checks.c.provider, func.avg(checks.c.ok.cast(Integer)))
                .where(
                    checks.c.target == SERVICE,
                    checks.c.checked_at > at - timedelta(days=days),
                    checks.c.checked_at <= at,
                )
                .group_by(checks.c.provider)
            )
            for provider, share in rows:
                found.setdefault(provider, dict.fromkeys(UPTIME_WINDOWS))[window] = float(share)
    return found


def last_healthy(
    engine: Engine, providers: Sequence[str], before: datetime
) -> dict[str, datetime | None]:
    """Each provider's newest good `service` check at or before `before`: the last time
    its traffic was seen flowing (None: no such check is kept)."""
    checks = pos_health_checks
    with engine.connect() as conn:
        rows = conn.execute(
            select(checks.c.provider, func.max(checks.c.checked_at))
            .where(
                checks.c.target == SERVICE,
                checks.c.ok.is_(True),
                checks.c.checked_at <= before,
                checks.c.provider.in_(list(providers)),
            )
            .group_by(checks.c.provider)
        ).all()
    found: dict[str, datetime | None] = dict.fromkeys(providers)
    found.update({provider: at for provider, at in rows})
    return found


def history(engine: Engine, at: datetime) -> PosHistory:
    """States, last moves, uptimes and newest checks, as of `at`."""
    return PosHistory(states(engine), last_moves(engine), uptimes(engine, at), last_checks(engine))
