"""`feedback-ops deploy` and `feedback-ops pool-failover`: the deployments on the work
pools of a Prefect server, for workers in the primary and the standby region.

`deploy` registers what `deployments/` declares (`deployments.pools`), creating the
pools when missing; it compares each registration with what the server holds and
changes only what differs, so a second run changes nothing. Every check (the API
answers, the pools are of the right type, the names are valid) comes before the first
write, so bad input leaves nothing half-registered.
"""

from __future__ import annotations

import base64
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.deployments.runner import RunnerDeployment
from prefect.exceptions import ObjectNotFound

from deployments.pools import (
    automation_fields,
    desired_fields,
    pool_registrations,
    registration_fields,
    settle_version,
)
from feedback_ops.errors import OpsError
from tasks.work_pools import PoolLayout, read_layout, save_layout

POOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def prefect_api() -> str:
    """The Prefect API that PREFECT_API_URL names, after checking that it answers.

    Raises:
        OpsError: PREFECT_API_URL is unset, or nothing answers there; one line.
    """
    api = os.environ.get("PREFECT_API_URL", "").strip()
    if not api:
        raise OpsError(
            "PREFECT_API_URL is not set: name the Prefect server's API to register on, "
            "e.g. PREFECT_API_URL=http://prefect.internal:4200/api"
        )
    try:
        with urllib.request.urlopen(f"{api.rstrip('/')}/health", timeout=5) as answer:
            if answer.status == 200:
                _check_credentials(api)
                return api
            reason = f"HTTP {answer.status}"
    except urllib.error.HTTPError as exc:
        reason = f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        reason = str(getattr(exc, "reason", None) or exc)
    raise OpsError(f"the Prefect API at {api} does not answer ({reason}); is the server up?")


def _check_credentials(api: str) -> None:
    """Ask the API something only a signed-in client may: a server with an auth string
    answers `/health` to anyone, so a wrong PREFECT_API_AUTH_STRING would otherwise show
    first as a 401 in the middle of the registration."""
    request = urllib.request.Request(f"{api.rstrip('/')}/admin/version")
    if auth := os.environ.get("PREFECT_API_AUTH_STRING", ""):
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    elif key := os.environ.get("PREFECT_API_KEY", ""):
        request.add_header("Authorization", f"Bearer {key}")
    try:
        urllib.request.urlopen(request, timeout=5).close()
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            said = "refuses PREFECT_API_AUTH_STRING's credentials" if auth else "asks who you are"
            raise OpsError(
                f"the Prefect API at {api} {said} (HTTP {exc.code}): set "
                "PREFECT_API_AUTH_STRING to the user:password of the server's "
                "PREFECT_SERVER_API_AUTH_STRING"
            ) from None


@dataclass
class DeployOutcome:
    """What `deploy` changed on the server."""

    layout: PoolLayout
    pools_created: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    updated: dict[str, list[str]] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The `deploy --json` document."""
        return {
            "primary_pool": self.layout.primary,
            "standby_pool": self.layout.standby,
            "active_pool": self.layout.active_pool,
            "pools_created": self.pools_created,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
        }


def deploy(primary: str, standby: str | None = None, image: str | None = None) -> DeployOutcome:
    """Register every deployment for `primary` (and its twins for `standby`) on the
    Prefect server of PREFECT_API_URL, keeping the side that is active now.

    Raises:
        OpsError: the API does not answer, a name is invalid, or a pool exists with
            another type than this registration needs; nothing is written then.
    """
    for name in filter(None, (primary, standby)):
        if not POOL_NAME.match(name):
            raise OpsError(
                f"work pool name {name!r} is not valid: letters, digits, '.', '_' and '-'"
            )
    if standby == primary:
        raise OpsError(f"--standby-pool must differ from --pool (both are {primary!r})")
    prefect_api()
    pool_type = "docker" if image else "process"
    with get_client(sync_client=True) as client:
        before = read_layout(client)
        if standby is None and before is not None and before.primary == primary:
            standby = before.standby  # a standby registered earlier stays registered
        missing = [
            pool for pool in filter(None, (primary, standby)) if _missing(client, pool, pool_type)
        ]
        active = (
            before.active
            if before and (before.primary, before.standby) == (primary, standby)
            else "primary"
        )
        layout = PoolLayout(primary=primary, standby=standby, active=active)
        runners = pool_registrations(layout, image)  # built before the first write
        outcome = DeployOutcome(layout=layout)
        for pool in missing:
            _create_pool(client, pool, pool_type)
            outcome.pools_created.append(pool)
        save_layout(client, layout)
        for runner in runners:
            name = f"{runner.flow_name}/{runner.name}"
            version = settle_version(runner)
            differs = _differences(client, runner)
            if differs == []:
                outcome.unchanged.append(name)
                continue
            runner.apply(version_info=version)
            if differs is None:
                outcome.created.append(name)
            else:
                outcome.updated[name] = differs
    return outcome


def _missing(client: SyncPrefectClient, pool: str, pool_type: str) -> bool:
    """Whether `pool` must be created; an existing pool of another type is an error."""
    try:
        existing = client.read_work_pool(pool)
    except ObjectNotFound:
        return True
    # A process pool runs the installed project; any other type (docker, kubernetes,
    # ecs) runs flows in the image --image names.
    if (existing.type == "process") != (pool_type == "process"):
        how = "leave out --image" if existing.type == "process" else "pass --image IMAGE"
        raise OpsError(
            f"work pool {pool!r} is a {existing.type} pool, and this registration needs "
            f"a {'process' if pool_type == 'process' else 'container'} pool: {how}, or "
            "name another pool"
        )
    return False


def _create_pool(client: SyncPrefectClient, pool: str, pool_type: str) -> None:
    """Create a pool with its type's default job template (the server knows them)."""
    template: dict[str, Any] = {}
    if pool_type == "process":
        from prefect.workers.process import ProcessWorker

        template = ProcessWorker.get_default_base_job_template()
    else:
        # The Docker worker is not installed here; the server has its job template.
        answer = client.request(
            "GET", "/collections/views/{view}", path_params={"view": "aggregate-worker-metadata"}
        )
        answer.raise_for_status()
        for collection in answer.json().values():
            for worker in collection.values():
                if worker.get("type") == pool_type:
                    template = worker.get("default_base_job_configuration") or {}
    client.create_work_pool(
        WorkPoolCreate(
            name=pool,
            type=pool_type,
            base_job_template=template,
            description="feedback-ops: created by `feedback-ops deploy`",
        )
    )


def _differences(client: SyncPrefectClient, runner: RunnerDeployment) -> list[str] | None:
    """The fields in which the registered deployment differs from `runner`; None when
    it is not registered at all."""
    try:
        existing = client.read_deployment_by_name(f"{runner.flow_name}/{runner.name}")
    except ObjectNotFound:
        return None
    have, want = registration_fields(existing), desired_fields(runner)
    differs = sorted(key for key in want if have.get(key) != want[key])
    # The automations that start this deployment: those its triggers made (the server
    # does not say which owns them when they are read back).
    registered = sorted(
        automation_fields(a)
        for a in client.read_resource_related_automations(f"prefect.deployment.{existing.id}")
    )
    wanted = []
    for trigger in runner.triggers:
        trigger.set_deployment_id(existing.id)
        wanted.append(automation_fields(trigger.as_automation()))
    if registered != sorted(wanted):
        differs.append("triggers")
    return differs


def pool_failover(to: str, force: bool = False) -> Any:
    """Make `to` (standby or primary) the active side; see `tasks.work_pools`.

    Raises:
        OpsError: `to` is neither side, the API does not answer, nothing is deployed,
            or the target pool has no ready worker and not `force`.
    """
    from tasks.work_pools import SIDES, swap_active_pool

    if to not in SIDES:
        raise OpsError(f"--to must be standby or primary, not {to!r}")
    prefect_api()
    return swap_active_pool(to, force=force)
