"""Runbook, "Backup & Recovery Procedures": Redis — snapshot every 6 hours.

Snapshot the platform's Redis by the method its block names (`rdb` over the
replication stream, or `logical` SCAN+DUMP for managed Redis that refuses SYNC), then
the same steps as every backup: read back and check, manifest with key counts per
database and `used_memory`, replicas, `ops.backup_records`, an alert if it failed.
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from blocks import BackupStorage, PostgresDatabase, RedisServer, load_block
from blocks.names import (
    ALERT_CHANNELS_BLOCK,
    BACKUP_STORAGE_BLOCK,
    METRICS_BLOCK,
    OPS_DATABASE_BLOCK,
    REDIS_BLOCK,
)
from blocks.redis.records import CONTENT_FORMAT
from blocks.redis.snapshot import RDB_FORMAT
from blocks.storage.stores import ObjectStore
from flows.alert_steps import AlertTargets, alerting_on_failure
from flows.backup_steps import (
    RUNBOOK_SECTION,
    BackupOf,
    Produced,
    StoredBackup,
    locations_table,
    take_backup,
)
from flows.locks import lock_name
from flows.metric_steps import backup_figures_after
from flows.parameters import BlockName
from tasks import human_size
from tasks.redis import snapshot_redis

KIND = "redis"
SUFFIXES = {"rdb": ".rdb", "logical": ".redis"}


class SnapshotSummary(BaseModel):
    """What `feedback-ops run redis-snapshot --json` prints as `result`."""

    backup_id: str
    method: str
    locations: list[str] = Field(description="Primary first, then every replica.")
    size: int
    sha256: str
    total_keys: int
    used_memory: int


@flow(name="redis-snapshot")
def redis_snapshot(
    redis_block: BlockName = REDIS_BLOCK,
    storage_block: BlockName = BACKUP_STORAGE_BLOCK,
    ops_database_block: BlockName = OPS_DATABASE_BLOCK,
    alert_channels_block: BlockName = ALERT_CHANNELS_BLOCK,
    metrics_block: BlockName = METRICS_BLOCK,
) -> SnapshotSummary:
    """Snapshot the platform's Redis (runbook: every 6 hours).

    `rdb` streams `redis-cli --rdb` through `redis-check-rdb` into the backup storage;
    `logical` writes every key's DUMP payload and expiry. Either way the object is read
    back and checked, the manifest records keys and expiring keys per database and the
    server's `used_memory`, every replica is written and checked, and the snapshot is
    recorded in `ops.backup_records`. Neither method blocks the server.

    Args:
        redis_block: Name of the Redis Server block of the platform's Redis.
        storage_block: Name of the Backup Storage block: the primary location of the
            backups and their replicas.
        ops_database_block: Name of the Postgres Database block of the ops catalog
            (`ops.backup_records`, alerts).
        alert_channels_block: Name of the Alert Channels block: Slack, email, PagerDuty,
            SMS and the escalation contacts a failure is reported to.
        metrics_block: Name of the Metrics Pushgateway block the run pushes its figures
            to; none saved, or one without a URL: nothing is pushed.
    """
    with (
        backup_figures_after(metrics_block, ops_database_block, KIND),
        alerting_on_failure(
            condition=f"redis-snapshot:{redis_block}",
            alert_name="redis-snapshot-failed",
            what=f"Redis snapshot of {redis_block}",
            details={"redis_block": redis_block},
            runbook_section=RUNBOOK_SECTION,
            targets=AlertTargets(ops_database_block, alert_channels_block),
        ),
    ):
        server = load_block(RedisServer, redis_block)

        def snapshot(store: ObjectStore, key: str, previous_size: int | None) -> Produced:
            result = snapshot_redis(server, store, key, previous_size)
            return Produced(
                size=result.size,
                sha256=result.sha256,
                started_at=result.started_at,
                finished_at=result.finished_at,
                tools=result.tools,
                content_format=RDB_FORMAT if result.method == "rdb" else CONTENT_FORMAT,
                contents={
                    "method": result.method,
                    "databases": result.databases,
                    "keys": result.keys,
                    "used_memory": result.used_memory,
                },
            )

        backup = take_backup(
            BackupOf(
                kind=KIND,
                source=server.display_name,
                suffix=SUFFIXES[server.snapshot_method],
                lock=lock_name("redis", server.display_name),
                artifact_key="redis-snapshot",
            ),
            storage=load_block(BackupStorage, storage_block),
            ops_db=load_block(PostgresDatabase, ops_database_block),
            produce=snapshot,
        )
    _publish(backup, server.display_name)
    contents = backup.produced.contents
    return SnapshotSummary(
        backup_id=backup.backup_id,
        method=contents["method"],
        locations=backup.locations,
        size=backup.produced.size,
        sha256=backup.produced.sha256,
        total_keys=contents["keys"],
        used_memory=contents["used_memory"],
    )


def _publish(backup: StoredBackup, source: str) -> None:
    snap = backup.produced
    dbs = "\n".join(
        f"| db{db} | {c['keys']} | {c['expires']} |"
        for db, c in sorted(snap.contents["databases"].items(), key=lambda kv: int(kv[0]))
    )
    create_markdown_artifact(
        key="redis-snapshot",
        description=f"Redis snapshot {backup.backup_id}: completed",
        markdown=f"""# Redis snapshot `{backup.backup_id}` — completed

| | |
|---|---|
| Source | `{source}` |
| Method | {snap.contents["method"]} ({snap.content_format}) |
| Size | {human_size(snap.size)} ({snap.size} bytes) |
| Duration | {snap.seconds:.1f} s |
| Keys | {snap.contents["keys"]} |
| Server used_memory | {human_size(snap.contents["used_memory"])} |
| sha256 | `{snap.sha256}` |

## Locations

{locations_table(backup.copies)}

## Keys per database

| database | keys | with TTL |
|---|---|---|
{dbs}
""",
    )
