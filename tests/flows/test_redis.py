"""redis-snapshot and redis-restore against real redis-server processes, a local disk
and S3 (moto): 100k keys of every type by both methods, restored identical."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support.artifacts import progress_bars
from support.redis_server import RedisProcess, dumps, fill, redis_server, values

from blocks.redis import RedisServer
from flows.redis_restore import redis_restore
from flows.redis_snapshot import redis_snapshot

KEYS = 100_000


def failure_of(state: Any) -> str:
    assert state.is_failed(), state
    return str(state.result(raise_on_failure=False))


def manifests(root: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("*.manifest.json"))]


def same_contents(
    source: RedisProcess, target: RedisProcess, want: dict[Any, Any] | None = None
) -> None:
    """Every key with the same expiry to the millisecond, and the same type and value.

    Values are compared as DUMP payloads first; a payload may legitimately differ when
    Redis rebuilt a hash table in another order, so those keys are compared value by
    value (and there must be such keys only of the hash-table types).
    """
    want = want if want is not None else dumps(source)
    have = dumps(target)
    assert have.keys() == want.keys()
    assert {k: e for k, (_p, e) in have.items()} == {k: e for k, (_p, e) in want.items()}
    differ = [k for k, (payload, _e) in want.items() if have[k][0] != payload]
    assert {key.split(b":")[0] for _db, key in differ} <= {b"hash", b"set", b"zset"}
    assert values(target, differ) == values(source, differ)


@dataclass(frozen=True)
class Filled:
    """The 100k-key source: its keys per database and every key's DUMP and expiry."""

    server: RedisProcess
    per_db: dict[int, int]
    dumps: dict[Any, Any]


@pytest.fixture(scope="module")
def filled() -> Iterator[Filled]:
    """A Redis with 100k keys of every type, half with a TTL, in two databases; read
    back once, as no test changes it."""
    with redis_server() as server:
        per_db = fill(server, KEYS)
        yield Filled(server, per_db, dumps(server))


@pytest.fixture
def empty_target() -> Iterator[RedisProcess]:
    with redis_server() as server:
        yield server


def redis_params(save_blocks: Any, server: RedisProcess, ops_url: str, **env: str) -> Any:
    return save_blocks(REDIS_URL=server.url, OPS_DATABASE_URL=ops_url, **env)


# Both 100k-key tests run on one xdist worker (make test: --dist loadgroup), so the
# source is filled once.
@pytest.mark.xdist_group("redis-100k")
def test_logical_snapshot_restores_100k_keys_of_every_type_identically(
    filled: Filled,
    empty_target: RedisProcess,
    save_blocks: Any,
    platform_db: str,
    tmp_path: Path,
) -> None:
    source, per_db = filled.server, filled.per_db
    params = redis_params(
        save_blocks,
        source,
        platform_db,
        REDIS_SNAPSHOT_METHOD="logical",
        BACKUP_URL=f"file://{tmp_path}/b",
        BACKUP_REPLICA_URLS=f"file://{tmp_path}/replica",
    )
    snap = redis_snapshot(**params)

    assert snap.method == "logical" and snap.total_keys == KEYS
    (manifest,) = manifests(tmp_path / "b")
    assert manifest["format"] == "redis-logical-v1"
    assert manifest["databases"] == {
        str(db): {"keys": n, "expires": n // 2} for db, n in per_db.items()
    }
    assert manifest["used_memory"] == snap.used_memory > 0
    assert manifests(tmp_path / "replica") == [manifest]
    with psycopg.connect(platform_db) as conn:
        status = conn.execute(
            "SELECT status, kind FROM ops.backup_records WHERE id = %s", (snap.backup_id,)
        ).fetchone()
    assert status == ("completed", "redis")

    target = save_blocks(REDIS_URL=empty_target.url)["redis_block"]
    state = redis_restore(
        backup_id=snap.backup_id,
        target_block=target,
        storage_block=params["storage_block"],
        return_state=True,
    )
    result = state.result()
    # The restore's progress, in keys: at 100 once done, saying how many.
    [bar] = progress_bars(state.state_details.flow_run_id)
    assert bar.data == 100.0
    assert bar.description.startswith(
        f"restore of {snap.backup_id} into {RedisServer.from_url(empty_target.url).display_name}: "
        f"{KEYS} keys in "
    )
    assert result.keys_per_database == {f"db{db}": n for db, n in per_db.items()}
    assert result.expired_since_snapshot == 0
    same_contents(source, empty_target, filled.dumps)


@pytest.mark.xdist_group("redis-100k")
def test_rdb_snapshot_on_s3_restores_through_a_temporary_server(
    filled: Filled,
    empty_target: RedisProcess,
    save_blocks: Any,
    platform_db: str,
    s3_bucket: str,
) -> None:
    source, per_db = filled.server, filled.per_db
    params = redis_params(
        save_blocks,
        source,
        platform_db,
        REDIS_SNAPSHOT_METHOD="rdb",
        BACKUP_URL=f"s3://{s3_bucket}/redis-test",
    )
    snap = redis_snapshot(**params)
    assert snap.method == "rdb" and snap.total_keys == KEYS
    assert snap.locations[0].endswith(".rdb")

    target = save_blocks(REDIS_URL=empty_target.url)["redis_block"]
    result = redis_restore(target_block=target, storage_block=params["storage_block"])
    assert result.backup_id == snap.backup_id
    assert result.how.startswith("temporary redis-server")
    assert result.keys_per_database == {f"db{db}": n for db, n in per_db.items()}
    # The RDB keeps absolute expiry times: they must come back to the millisecond.
    same_contents(source, empty_target, filled.dumps)


def test_rdb_restore_into_a_self_hosted_server_follows_the_runbook(
    save_blocks: Any, platform_db: str, tmp_path: Path
) -> None:
    with redis_server() as source, redis_server() as target:
        per_db = fill(source, 3000)
        target.client(5).set("stale", "replaced by the restore")
        params = redis_params(
            save_blocks,
            source,
            platform_db,
            REDIS_SNAPSHOT_METHOD="rdb",
            BACKUP_URL=f"file://{tmp_path}/b",
        )
        redis_snapshot(**params)
        target_block = save_blocks(
            REDIS_URL=target.url,
            REDIS_DATA_DIR=str(target.dir),
            REDIS_STOP_COMMAND=" ".join(target.stop_command),
            REDIS_START_COMMAND=" ".join(target.start_command),
        )["redis_block"]

        refused = redis_restore(
            target_block=target_block, storage_block=params["storage_block"], return_state=True
        )
        assert "holds 1 keys (databases db5); run with overwrite=True" in failure_of(refused)
        assert target.client(5).get("stale") == b"replaced by the restore"

        result = redis_restore(
            target_block=target_block, storage_block=params["storage_block"], overwrite=True
        )
        assert result.how.startswith("runbook: stop, copy into")
        assert result.keys_per_database == {f"db{db}": n for db, n in per_db.items()}
        stored = next((tmp_path / "b").rglob("*.rdb"))
        assert (target.dir / "dump.rdb").read_bytes() == stored.read_bytes()
        # A clean RDB file: it ends with its checksum, without the stream's EOF mark.
        check = subprocess.run(
            ["redis-check-rdb", str(stored)], capture_output=True, text=True, check=True
        )
        assert f"[offset {stored.stat().st_size}] Checksum OK" in check.stdout
        same_contents(source, target)

        # A crashed self-hosted server: the runbook's recovery brings it back with the data.
        subprocess.run(target.stop_command, check=True, capture_output=True)
        again = redis_restore(target_block=target_block, storage_block=params["storage_block"])
        assert again.keys_per_database == result.keys_per_database
        same_contents(source, target)


def test_keys_that_expired_since_the_snapshot_are_accounted_for(
    save_blocks: Any, platform_db: str, tmp_path: Path
) -> None:
    ttl_ms = 10_000  # outlives one snapshot run, even on a loaded machine
    with redis_server() as source:
        source.client(0).mset({f"kept:{n}": n for n in range(50)})
        snaps = {}
        for method in ("rdb", "logical"):
            for n in range(20):
                source.client(0).set(f"short:{n}", n, px=ttl_ms)
            expired_at = time.monotonic() + ttl_ms / 1000
            params = redis_params(
                save_blocks,
                source,
                platform_db,
                REDIS_SNAPSHOT_METHOD=method,
                BACKUP_URL=f"file://{tmp_path}/{method}",
            )
            snaps[method] = (redis_snapshot(**params), params)
            assert snaps[method][0].total_keys == 70  # taken before they expired
    time.sleep(max(0.0, expired_at - time.monotonic()) + 0.2)

    for method, (snap, params) in snaps.items():
        with redis_server() as target:
            target_block = save_blocks(REDIS_URL=target.url)["redis_block"]
            result = redis_restore(target_block=target_block, storage_block=params["storage_block"])
            assert result.backup_id == snap.backup_id
            assert result.keys_per_database == {"db0": 50}, method
            assert result.expired_since_snapshot == 20, method
            assert target.client(0).keys("short:*") == [], method


def test_overwrite_empties_the_target_first(
    save_blocks: Any, platform_db: str, tmp_path: Path
) -> None:
    with redis_server() as source, redis_server() as target:
        fill(source, 600)
        params = redis_params(save_blocks, source, platform_db, BACKUP_URL=f"file://{tmp_path}/b")
        snap = redis_snapshot(**params)
        target.client(0).set("only-in-target", "1")
        target_block = save_blocks(REDIS_URL=target.url)["redis_block"]
        redis_restore(
            backup_id=snap.backup_id,
            target_block=target_block,
            storage_block=params["storage_block"],
            overwrite=True,
        )
        same_contents(source, target)


def test_a_flipped_byte_fails_the_restore_before_anything_is_written(
    save_blocks: Any, platform_db: str, tmp_path: Path, empty_target: RedisProcess
) -> None:
    with redis_server() as source:
        fill(source, 300)
        params = redis_params(save_blocks, source, platform_db, BACKUP_URL=f"file://{tmp_path}/b")
        redis_snapshot(**params)
    (stored,) = (tmp_path / "b").rglob("*.redis")
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))

    target = save_blocks(REDIS_URL=empty_target.url)["redis_block"]
    state = redis_restore(
        target_block=target, storage_block=params["storage_block"], return_state=True
    )
    assert "sha256" in failure_of(state)
    assert empty_target.client().dbsize() == 0


def test_rdb_refused_by_a_managed_redis_fails_clearly_and_alerts(
    save_blocks: Any, platform_db: str, tmp_path: Path
) -> None:
    # Managed Redis (Redis Cloud, ElastiCache) refuses SYNC and PSYNC like this.
    with redis_server("--rename-command", "SYNC", "", "--rename-command", "PSYNC", "") as managed:
        fill(managed, 100)
        params = redis_params(
            save_blocks,
            managed,
            platform_db,
            REDIS_SNAPSHOT_METHOD="rdb",
            BACKUP_URL=f"file://{tmp_path}/b",
        )
        state = redis_snapshot(**params, return_state=True)
        message = failure_of(state)
        assert "refused the replication stream" in message
        assert "snapshot_method 'logical'" in message
        assert "\n" not in message
        assert not list((tmp_path / "b").rglob("*.*"))
        with psycopg.connect(platform_db) as conn:
            alert = conn.execute(
                "SELECT name, severity, status FROM ops.alerts WHERE dedup_key = %s",
                (f"redis-snapshot:{params['redis_block']}",),
            ).fetchone()
            record = conn.execute("SELECT status FROM ops.backup_records").fetchone()
        assert alert == ("redis-snapshot-failed", "high", "open")
        assert record == ("failed",)

        # The operator switches the block to logical in the UI: it works on the same
        # server, and the next success resolves the alert.
        block = RedisServer.load(params["redis_block"])
        block.snapshot_method = "logical"
        block.save(params["redis_block"], overwrite=True)
        snap = redis_snapshot(**params)
        with psycopg.connect(platform_db) as conn:
            (status,) = conn.execute(
                "SELECT status FROM ops.alerts WHERE dedup_key = %s",
                (f"redis-snapshot:{params['redis_block']}",),
            ).fetchone()
        assert status == "resolved"
        assert snap.total_keys == 100


def test_wrong_password_is_one_clear_line_without_the_secret(
    save_blocks: Any, platform_db: str, tmp_path: Path
) -> None:
    with redis_server(password="rätt-lösen-123") as locked:
        for method in ("logical", "rdb"):
            params = save_blocks(
                REDIS_URL=f"redis://:fel-l%C3%B6sen-456@127.0.0.1:{locked.port}",
                OPS_DATABASE_URL=platform_db,
                REDIS_SNAPSHOT_METHOD=method,
                BACKUP_URL=f"file://{tmp_path}/b",
            )
            message = failure_of(redis_snapshot(**params, return_state=True))
            assert message == (
                f"Redis at redis://127.0.0.1:{locked.port} rejected the login: "
                "wrong or missing password"
            ), method
            assert "fel-lösen" not in message


def test_a_database_backup_id_is_not_a_redis_snapshot(
    save_blocks: Any, empty_target: RedisProcess, tmp_path: Path
) -> None:
    target = save_blocks(REDIS_URL=empty_target.url, BACKUP_URL=f"file://{tmp_path}/b")
    state = redis_restore(
        backup_id="database-20270328T010000Z-3fa2c1",
        target_block=target["redis_block"],
        storage_block=target["storage_block"],
        return_state=True,
    )
    assert failure_of(state) == "'database-20270328T010000Z-3fa2c1' is not a redis backup"
    state = redis_restore(
        target_block=target["redis_block"],
        storage_block=target["storage_block"],
        return_state=True,
    )
    assert failure_of(state) == f"no redis backup in file://{tmp_path}/b"
