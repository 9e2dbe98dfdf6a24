"""dr-regional-failover: the backup region activated at the gateway, the newest backups
read back in its bucket, the DNS record moved in Route 53 (moto's server), the status
polled until healthy or not; rejection, a timeout, bad input and a drill."""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from prefect import tags
from prefect.flow_runs import resume_flow_run
from support import s3
from support.gateway_fake import GatewayFake
from support.prefect_runs import approval_form, paused_run

from flows.database_backup import database_backup
from flows.dr_regional_failover import dr_regional_failover

PRIMARY = "api.eu-west-1.ai-feedback.se"
BACKUP = "api.eu-central-1.ai-feedback.se"


def rows(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return list(conn.execute(sql, args).fetchall())


@pytest.fixture
def gateway() -> Iterator[GatewayFake]:
    with GatewayFake() as fake:
        yield fake


@pytest.fixture
def zone(s3_endpoint: str) -> Iterator[tuple[Any, str, str]]:
    """A hosted zone on moto whose `api.` record points at the primary region."""
    route53 = boto3.client("route53", endpoint_url=s3_endpoint)
    domain = f"t{secrets.token_hex(4)}.ai-feedback.se"
    zone_id = route53.create_hosted_zone(Name=domain, CallerReference=secrets.token_hex(8))[
        "HostedZone"
    ]["Id"].rsplit("/", 1)[-1]
    record = {"Name": f"api.{domain}", "Type": "CNAME", "TTL": 300,
              "ResourceRecords": [{"Value": PRIMARY}]}  # fmt: skip
    route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": record}]},
    )
    yield route53, zone_id, f"api.{domain}"


def served(zone: tuple[Any, str, str]) -> str:
    route53, zone_id, name = zone
    found = route53.list_resource_record_sets(
        HostedZoneId=zone_id, StartRecordName=name, StartRecordType="CNAME", MaxItems="1"
    )["ResourceRecordSets"][0]
    return str(found["ResourceRecords"][0]["Value"])


@pytest.fixture
def region_bucket(s3_endpoint: str) -> Iterator[str]:
    client = s3.s3_client(s3_endpoint, region="eu-central-1")
    name = s3.create_bucket(client, s3.new_bucket_name("fo-frankfurt"), "eu-central-1")
    yield name
    s3.empty_and_delete_bucket(client, name)


@pytest.fixture
def setup(
    platform_db: str,
    db_factory: Any,
    tmp_path: Path,
    save_blocks: Any,
    gateway: GatewayFake,
    zone: tuple[Any, str, str],
    region_bucket: str,
    s3_endpoint: str,
) -> dict[str, Any]:
    ops_url = db_factory()
    saved = save_blocks(
        "platform-gateway",
        "alert-channels",
        "disaster-recovery",
        DATABASE_URL=platform_db,
        OPS_DATABASE_URL=ops_url,
        BACKUP_URL=f"file://{tmp_path}/backups",
        DR_BACKUP_REGION_URL=f"s3://{region_bucket}/platform",
        DR_BACKUP_REGION_ENDPOINT_URL=s3_endpoint,
        DR_DNS_ZONE_ID=zone[1],
        DR_DNS_RECORD=zone[2],
        DR_DNS_BACKUP_VALUE=BACKUP,
        ROUTE53_ENDPOINT_URL=s3_endpoint,
        DR_STATUS_TIMEOUT_SECONDS="10",
        **gateway.env(),
    )
    prefix = saved["ops_database_block"].removesuffix("-ops-postgres")
    params = {
        "storage_block": saved["storage_block"],
        "ops_database_block": saved["ops_database_block"],
        "gateway_block": f"{prefix}-platform-gateway",
        "alert_channels_block": f"{prefix}-alert-channels",
        "dr_block": f"{prefix}-disaster-recovery",
        "status_poll_seconds": 0.2,
    }
    backup = database_backup(
        database_block=saved["database_block"],
        ops_database_block=saved["ops_database_block"],
        storage_block=saved["storage_block"],
    )
    return {"params": params, "ops_url": ops_url, "backup": backup, "bucket": region_bucket}


def region_keys(endpoint: str, bucket: str) -> list[str]:
    listed = (
        s3.s3_client(endpoint, region="eu-central-1")
        .list_objects_v2(Bucket=bucket)
        .get("Contents", [])
    )
    return sorted(str(o["Key"]) for o in listed)


def run_approved(setup: dict[str, Any], answer: dict[str, Any], **kwargs: Any) -> Any:
    outcome: dict[str, Any] = {}
    tag = f"test-{uuid.uuid4().hex[:8]}"

    def run() -> None:
        with tags(tag):
            outcome["state"] = dr_regional_failover(
                **setup["params"], dry_run=False, **kwargs, return_state=True
            )

    worker = threading.Thread(target=run)
    worker.start()
    paused = paused_run(tag)
    outcome["form"] = approval_form(paused)
    resume_flow_run(paused.id, run_input=answer)
    worker.join(timeout=120)
    assert not worker.is_alive()
    return outcome


def dr_row(ops_url: str) -> dict[str, Any]:
    with psycopg.connect(ops_url, row_factory=psycopg.rows.dict_row) as conn:
        return dict(conn.execute("SELECT * FROM ops.dr_runs ORDER BY started_at DESC").fetchone())


def test_an_approved_failover_moves_the_region_the_backups_and_dns(
    setup: dict[str, Any], gateway: GatewayFake, zone: Any, s3_endpoint: str
) -> None:
    gateway.dr_healthy_after = 0.5
    incident = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
    outcome = run_approved(
        setup, {"approve": True, "approved_by": "Anna"}, incident_started_at=incident
    )
    after = datetime.now(UTC)
    form = outcome["form"]
    assert f"DNS now | CNAME {PRIMARY}" in form or PRIMARY in form
    assert f"UPSERT {zone[2]} CNAME {BACKUP} TTL 60" in form

    state = outcome["state"]
    assert state.is_completed(), state.message
    assert gateway.dr_failovers == [
        {"type": "regional", "target_region": "eu-central-1", "reason": "primary_region_failure"}
    ]
    assert served(zone).rstrip(".") == BACKUP
    backup_id = setup["backup"].backup_id
    keys = region_keys(s3_endpoint, setup["bucket"])
    assert any(backup_id in key for key in keys), keys
    row = dr_row(setup["ops_url"])
    assert (row["status"], row["mode"]) == ("completed", "real")
    assert incident + timedelta(minutes=20) <= row["service_validated_at"] <= after
    assert row["rto_seconds"] == pytest.approx(
        (row["service_validated_at"] - incident).total_seconds()
    )
    steps = {s["step"]: s["outcome"] for s in row["steps"]}
    assert steps == {
        "activate the backup region": "done",
        "backups in the backup region": "done",
        "move scheduled work to the standby pool": "skipped",  # `up` serves: no pools
        "point DNS at the backup region": "done",
        "service restored": "done",
    }


def test_a_status_that_never_turns_healthy_fails_after_the_timeout(
    setup: dict[str, Any], gateway: GatewayFake
) -> None:
    gateway.dr_healthy_after = None
    outcome = run_approved(setup, {"approve": True})
    state = outcome["state"]
    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert message.startswith("gateway: disaster-recovery status still 'in_progress' after 10 s")
    row = dr_row(setup["ops_url"])
    assert row["status"] == "failed" and row["rto_seconds"] is None


def test_a_declined_failover_changes_nothing(
    setup: dict[str, Any], gateway: GatewayFake, zone: Any, s3_endpoint: str
) -> None:
    outcome = run_approved(setup, {"approve": False, "approved_by": "Erik"})
    assert outcome["state"].result().outcome == "declined"
    assert gateway.requests("/admin") == [] or all(
        r.method == "GET" for r in gateway.requests("/admin")
    )
    assert served(zone) == PRIMARY
    assert region_keys(s3_endpoint, setup["bucket"]) == []


def test_a_drill_copies_backups_but_moves_no_traffic(
    setup: dict[str, Any], gateway: GatewayFake, zone: Any, s3_endpoint: str
) -> None:
    outcome = run_approved(setup, {"approve": True}, drill=True)
    state = outcome["state"]
    assert state.is_completed(), state.message
    assert gateway.requests("/admin") == [], "no drill gateway: its calls are skipped"
    assert served(zone) == PRIMARY
    assert region_keys(s3_endpoint, setup["bucket"]) != []
    row = dr_row(setup["ops_url"])
    assert row["mode"] == "drill"
    assert {s["step"]: s["outcome"] for s in row["steps"]}["point DNS at the backup region"] == (
        "skipped"
    )


def test_an_unconfigured_target_region_is_refused_before_anything_changes(
    setup: dict[str, Any], gateway: GatewayFake, zone: Any
) -> None:
    state = dr_regional_failover(
        **setup["params"], dry_run=False, target_region="us-east-1", return_state=True
    )
    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert message == (
        "target region 'us-east-1' is not configured: DR_BACKUP_REGION is 'eu-central-1'"
    )
    assert gateway.requests("/admin") == [] and served(zone) == PRIMARY
