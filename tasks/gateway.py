"""Tasks on the platform gateway's admin API that disaster recovery drives: maintenance
mode, the DR hand-over, the DR status, and the health check that validates service.

Each is safe to run again: maintenance on and off set a state rather than toggle it,
and the hand-over is asked once per approved plan (the gateway answers a repeated one
with the failover already under way). Maintenance mode is noted in the ops catalog
before it is turned on and closed there after it was turned off, so any process that
cleans up after a run knows what to undo.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from blocks.catalog import dr_runs, opened
from blocks.gateway import PlatformGateway
from blocks.gateway.client import GatewayClient
from blocks.postgres import PostgresDatabase
from feedback_ops.errors import OpsError
from tasks import QUICK, SWEEP_RETRY_DELAYS, TRANSFER, step

HEALTHY = "healthy"


def manual_off_command(gateway_url: str) -> str:
    """The command an operator types when the flow could not turn maintenance off."""
    return (
        f'curl -X DELETE "{gateway_url.rstrip("/")}/admin/maintenance" '
        '-H "Authorization: Bearer $ADMIN_TOKEN"'
    )


@step("maintenance-on", limit=QUICK, retry_delays=SWEEP_RETRY_DELAYS)
def maintenance_on(
    gateway: PlatformGateway,
    ops_db: PostgresDatabase,
    *,
    flow_run_id: str,
    reason: str,
    estimated_duration: str,
) -> dict[str, Any]:
    """`POST /admin/maintenance` with the reason and estimated duration, noted in
    `ops.dr_maintenance` first: a run killed between the two leaves a note to act on,
    never maintenance mode on that nobody knows of."""
    with opened(ops_db) as engine:
        dr_runs.maintenance_opened(
            engine,
            flow_run_id=flow_run_id,
            gateway_url=gateway.base_url(),
            reason=reason,
            at=datetime.now(UTC),
        )
    with GatewayClient(gateway) as client:
        return client.maintenance_on(reason, estimated_duration)


@step("maintenance-off", limit=QUICK, retry_delays=SWEEP_RETRY_DELAYS)
def maintenance_off(gateway: PlatformGateway, ops_db: PostgresDatabase) -> int:
    """`DELETE /admin/maintenance`, then close every DR note of maintenance at this
    gateway; returns how many notes it closed. A failure is noted on them and raised."""
    url = gateway.base_url()
    with opened(ops_db) as engine:
        try:
            with GatewayClient(gateway) as client:
                client.maintenance_off()
        except OpsError as exc:
            dr_runs.maintenance_closed(engine, url, datetime.now(UTC), error=str(exc))
            raise
        return dr_runs.maintenance_closed(engine, url, datetime.now(UTC))


@step("check-platform-health", limit=QUICK, retry_delays=SWEEP_RETRY_DELAYS)
def check_platform_health(gateway: PlatformGateway, *, maintenance: bool) -> dict[str, Any]:
    """`GET /health`: the platform answers healthy, with maintenance mode as expected.

    Raises:
        OpsError: the answer is not healthy, or maintenance mode is not as expected.
    """
    with GatewayClient(gateway) as client:
        answer = client.health()
    status = str(answer.get("status", "")).lower()
    if status != HEALTHY:
        raise OpsError(f"gateway: GET /health answered status {status or 'none'!r}, not healthy")
    if "maintenance" in answer and bool(answer["maintenance"]) is not maintenance:
        said = "on" if answer["maintenance"] else "off"
        raise OpsError(
            f"gateway: GET /health says maintenance mode is {said}, expected "
            f"{'on' if maintenance else 'off'}"
        )
    return answer


@step("hand-over", limit=QUICK, retries=0)
def hand_over(gateway: PlatformGateway, body: dict[str, Any]) -> dict[str, Any]:
    """`POST /admin/disaster-recovery/failover` with the approved body; one decision is
    one request (the client itself retries what never reached the gateway)."""
    with GatewayClient(gateway) as client:
        return client.dr_failover(body)


@step("read-dr-status", limit=QUICK, retry_delays=SWEEP_RETRY_DELAYS)
def read_dr_status(gateway: PlatformGateway) -> dict[str, Any]:
    """`GET /admin/disaster-recovery/status` once: is a failover already under way?"""
    with GatewayClient(gateway) as client:
        return client.dr_status()


@step("wait-for-dr-status", limit=TRANSFER, retry_delays=SWEEP_RETRY_DELAYS)
def wait_for_dr_status(
    gateway: PlatformGateway,
    *,
    timeout_seconds: float,
    poll_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll `GET /admin/disaster-recovery/status` until it says healthy.

    Raises:
        OpsError: not healthy after `timeout_seconds`; the message gives the last answer.
    """
    started = time.monotonic()
    with GatewayClient(gateway) as client:
        while True:
            answer = client.dr_status()
            if str(answer.get("status", "")).lower() == HEALTHY:
                return answer
            if time.monotonic() - started >= timeout_seconds:
                raise OpsError(
                    f"gateway: disaster-recovery status still {answer.get('status')!r} "
                    f"after {timeout_seconds:.0f} s (active region "
                    f"{answer.get('active_region', 'not said')})"
                )
            sleep(poll_seconds)
