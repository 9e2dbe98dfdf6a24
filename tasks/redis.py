"""Tasks on Redis: snapshots by the block's method, and loading a snapshot into a server."""

from __future__ import annotations

from typing import Any

from blocks.redis import RedisServer
from blocks.redis.records import CONTENT_FORMAT
from blocks.redis.restore import (
    Applied,
    copy_server,
    flush_all,
    replace_self_hosted,
    restore_stream,
    target_keys,
    temporary_server,
)
from blocks.redis.snapshot import SnapshotResult, logical_snapshot, rdb_snapshot
from blocks.storage.manifest import BackupKeys
from blocks.storage.stores import Digest, ObjectStore
from blocks.storage.verify import check_stored, local_copy
from tasks import QUICK, TRANSFER, StepProgress, step


@step("snapshot-redis", limit=TRANSFER)
def snapshot_redis(
    server: RedisServer, store: ObjectStore, key: str, expected_size: int | None = None
) -> SnapshotResult:
    """Stream a snapshot of every database into `store` under `key`, by the block's
    method, and count its keys per database; its progress shows in the UI against
    `expected_size` (the previous snapshot's)."""
    method = rdb_snapshot if server.snapshot_method == "rdb" else logical_snapshot
    progress = StepProgress(
        f"{server.snapshot_method} snapshot of {server.display_name}", expected_size
    )
    result = method(server, store, key, progress)
    progress.finish(result.size)
    return result


@step("count-redis-keys", limit=QUICK)
def count_keys(server: RedisServer) -> dict[int, int]:
    """Keys per database in the server now."""
    return target_keys(server)


@step("empty-redis", limit=QUICK)
def empty_server(server: RedisServer) -> None:
    """Empty every database of the server (FLUSHALL: the overwrite the operator asked for)."""
    flush_all(server)


@step("load-snapshot", limit=TRANSFER, retries=0)
def load_snapshot(
    store: ObjectStore, keys: BackupKeys, manifest: dict[str, Any], target: RedisServer
) -> tuple[str, Applied | None]:
    """Load the snapshot into the (empty or emptied) target, its progress in keys shown
    in the UI; returns how, and what a DUMP/RESTORE replay wrote (None when the server
    loaded the RDB file itself)."""
    expected = Digest(int(manifest["size"]), str(manifest["sha256"]))
    total = sum(int(c["keys"]) for c in manifest["databases"].values())
    progress = StepProgress(
        f"restore of {manifest['id']} into {target.display_name}", total, amount=_keys
    )
    if manifest["format"] == CONTENT_FORMAT:
        # The sha256 is checked before anything is written: read back first.
        check_stored(store, keys.object, expected)
        applied = restore_stream(target, store.read_chunks(keys.object), progress)
        progress.finish(total)
        return "RESTORE … REPLACE", applied
    with local_copy(store, keys.object, expected) as rdb_file:
        if target.self_hosted:
            replace_self_hosted(target, rdb_file)
            progress.finish(total)
            return f"runbook: stop, copy into {target.data_dir}, start", None
        with temporary_server(rdb_file) as loaded:
            copy_server(loaded, target, progress)
        progress.finish(total)
        # The temporary server dropped what had expired when it loaded the file, as a
        # server loading it itself would: the counts are checked the same way.
        return "temporary redis-server, then DUMP/RESTORE", None


def _keys(count: float) -> str:
    return f"{int(count)} keys"
