"""Runbook, "Backup & Recovery Procedures": Redis Recovery.

Loads a Redis snapshot (by id, the newest, or the newest before a Stockholm time) into
a target Redis and compares its key counts with the manifest. A logical snapshot is
replayed with RESTORE … REPLACE. An RDB snapshot goes into a self-hosted server the
runbook's way (stop, copy `dump.rdb` into its data directory, start) when its block
says how; otherwise through a temporary local `redis-server` and DUMP/RESTORE. A target
that holds keys is only replaced with `overwrite=True`.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import AwareDatetime, BaseModel

from blocks import BackupStorage, RedisServer, load_block
from blocks.names import BACKUP_STORAGE_BLOCK, REDIS_BLOCK
from blocks.redis.records import CONTENT_FORMAT
from blocks.redis.restore import compare_counts
from feedback_ops.errors import OpsError
from flows.locks import lock_name, system_lock
from flows.parameters import BackupId, BlockName
from tasks.redis import count_keys, empty_server, load_snapshot
from tasks.storage import find_backup


class RedisRestoreResult(BaseModel):
    """What `feedback-ops run redis-restore --json` prints as `result`."""

    backup_id: str
    target: str
    how: str
    seconds: float
    keys_per_database: dict[str, int]
    expired_since_snapshot: int


@flow(name="redis-restore")
def redis_restore(
    backup_id: BackupId = "latest",
    before: AwareDatetime | None = None,
    target_block: BlockName = REDIS_BLOCK,
    overwrite: bool = False,
    storage_block: BlockName = BACKUP_STORAGE_BLOCK,
) -> RedisRestoreResult:
    """Restore a Redis snapshot into the Redis of `target_block` (runbook: Redis Recovery).

    `backup_id` is a snapshot id or "latest"; `before` picks the newest snapshot taken
    before that time instead. A target holding keys is refused unless
    `overwrite=True`, and then emptied first. Afterwards the keys per database are
    compared with the manifest (keys whose TTL ran out since are accounted for).

    Args:
        backup_id: The snapshot to restore: its id or `latest`.
        before: Instead of `backup_id`: the newest snapshot taken before this time, with
            its offset (`2026-12-01T02:00+01:00`).
        target_block: Name of the Redis Server block to restore into (by default the
            platform's Redis).
        overwrite: Empty and replace a target that holds keys; without it such a target
            is refused.
        storage_block: Name of the Backup Storage block: the primary location of the
            backups and their replicas.
    """
    logger = get_run_logger()
    target = load_block(RedisServer, target_block)
    store = load_block(BackupStorage, storage_block).primary()
    manifest, keys = find_backup(store, backup_id, before, "redis")
    backup_id = str(manifest["id"])
    runbook_path = target.self_hosted and manifest["format"] != CONTENT_FORMAT
    with system_lock(lock_name("redis", target.display_name)):
        try:
            present = count_keys(target)
        except OpsError as exc:
            if not runbook_path:
                raise
            # A crashed self-hosted server is what the runbook's recovery is for.
            logger.warning("%s; restoring its data file and starting it", exc)
            present = {}
        if present and not overwrite:
            raise OpsError(
                f"Redis at {target.display_name} holds {sum(present.values())} keys "
                f"(databases {', '.join(f'db{d}' for d in present)}); "
                "run with overwrite=True to replace them"
            )
        if present and not runbook_path:
            logger.warning("Emptying %s (overwrite=True)", target.display_name)
            empty_server(target)
        started = time.monotonic()
        how, applied = load_snapshot(store, keys, manifest, target)
        seconds = time.monotonic() - started
        now = count_keys(target)
    problems = compare_counts(manifest["databases"], applied, now)
    if problems:
        raise OpsError(f"Redis at {target.display_name} after restore: {'; '.join(problems)}")
    expired = (
        sum(applied.expired.values()) if applied is not None else _expired_by_load(manifest, now)
    )
    result = RedisRestoreResult(
        backup_id=backup_id,
        target=target.display_name,
        how=how,
        seconds=round(seconds, 3),
        keys_per_database={f"db{db}": n for db, n in sorted(now.items())},
        expired_since_snapshot=expired,
    )
    _publish(result, store.url_for(keys.object), manifest)
    return result


def _expired_by_load(manifest: dict[str, object], now: dict[int, int]) -> int:
    databases = manifest["databases"]
    assert isinstance(databases, dict)
    return sum(int(c["keys"]) for c in databases.values()) - sum(now.values())


def _publish(result: RedisRestoreResult, url: str, manifest: dict[str, object]) -> None:
    databases = manifest["databases"]
    assert isinstance(databases, dict)
    rows = "\n".join(
        f"| db{db} | {c['keys']} | {result.keys_per_database.get(f'db{db}', 0)} |"
        for db, c in sorted(databases.items(), key=lambda kv: int(kv[0]))
    )
    create_markdown_artifact(
        key="redis-restore",
        description=f"Redis snapshot {result.backup_id} restored into {result.target}",
        markdown=f"""# Redis snapshot `{result.backup_id}` — restored

| | |
|---|---|
| Snapshot | `{url}` |
| Target | `{result.target}` |
| How | {result.how} |
| Duration | {result.seconds:.1f} s |
| Keys whose TTL ran out since the snapshot | {result.expired_since_snapshot} |

| database | keys in snapshot | keys now |
|---|---|---|
{rows}
""",
    )
