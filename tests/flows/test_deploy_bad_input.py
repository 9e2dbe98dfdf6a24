"""`feedback-ops deploy` and `pool-failover` refuse bad input in one line, before they
write anything: the session's Prefect server holds afterwards what it held before."""

from __future__ import annotations

import secrets
import subprocess
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from support.cli import RunCli
from support.receivers import closed_port

from tasks.work_pools import LAYOUT_VARIABLE


def unique_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def server_contents() -> dict[str, Any]:
    with get_client(sync_client=True) as client:
        return {
            "pools": sorted(p.name for p in client.read_work_pools()),
            "deployments": sorted(str(d.id) for d in client.read_deployments(limit=200)),
            "layout": client.read_variable_by_name(LAYOUT_VARIABLE),
        }


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_deploy_without_prefect_api_url_says_so(feedback_ops: RunCli) -> None:
    line = one_line_error(feedback_ops("deploy"))
    assert line.startswith("feedback-ops: deploy: PREFECT_API_URL is not set")


def test_deploy_to_a_server_that_does_not_answer(feedback_ops: RunCli) -> None:
    api = f"http://127.0.0.1:{closed_port()}/api"
    line = one_line_error(feedback_ops("deploy", "--pool", "ops-primary", PREFECT_API_URL=api))
    assert f"the Prefect API at {api} does not answer" in line
    assert "Connection refused" in line


NEEDS = "and this registration needs"


@pytest.mark.parametrize(
    ("pool_type", "image", "says"),
    [
        ("docker", (), f"is a docker pool, {NEEDS} a process pool: pass --image IMAGE"),
        (
            "process",
            ("--image", "reg.example/fo:1"),
            f"is a process pool, {NEEDS} a container pool: leave out --image",
        ),
    ],
)
def test_deploy_onto_a_pool_of_the_wrong_type_registers_nothing(
    feedback_ops: RunCli, prefect_api_url: str, pool_type: str, image: tuple[str, ...], says: str
) -> None:
    pool = unique_name(f"{pool_type}-pool")
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type=pool_type))
    before = server_contents()
    standby = unique_name("standby")
    line = one_line_error(
        feedback_ops(
            "deploy", "--pool", pool, "--standby-pool", standby, *image,
            PREFECT_API_URL=prefect_api_url,
        )
    )  # fmt: skip
    assert line == f"feedback-ops: deploy: work pool {pool!r} {says}, or name another pool"
    assert server_contents() == before  # no standby pool, no deployment, no layout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--to", "sideways"), "--to must be standby or primary, not 'sideways'"),
        (("--to", "standby"), "no work pools are registered on this Prefect server"),
    ],
)
def test_pool_failover_refuses_in_one_line(
    feedback_ops: RunCli, prefect_api_url: str, args: tuple[str, ...], says: str
) -> None:
    before = server_contents()
    line = one_line_error(feedback_ops("pool-failover", *args, PREFECT_API_URL=prefect_api_url))
    assert line.startswith("feedback-ops: pool-failover: ") and says in line
    assert server_contents() == before


def test_deploy_refuses_a_pool_name_prefect_cannot_hold(
    feedback_ops: RunCli, prefect_api_url: str
) -> None:
    line = one_line_error(
        feedback_ops("deploy", "--pool", "ops/primary", PREFECT_API_URL=prefect_api_url)
    )
    assert "work pool name 'ops/primary' is not valid" in line
