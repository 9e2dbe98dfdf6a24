"""Tasks on PostgreSQL: the dump of the platform database and the ops catalog."""

from __future__ import annotations

from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.postgres import PostgresDatabase
from tasks import catalog
from tasks.object_store import ObjectStore
from tasks.pg_dump import DumpResult, dump_to_store
from tasks.retry import RETRY_DELAYS, retry_if_transient


@task(
    name="dump-database",
    retries=2,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
def dump_database(
    db: PostgresDatabase,
    store: ObjectStore,
    key: str,
    lock_wait_timeout_seconds: int = 300,
) -> DumpResult:
    """Stream `pg_dump --format=custom` of `db` into `store` under `key`, with sha256,
    size and exact per-table row counts from the same snapshot."""
    return dump_to_store(db, store, key, lock_wait_timeout_seconds=lock_wait_timeout_seconds)


@task(
    name="open-ops-catalog",
    retries=2,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
def open_catalog(ops_db: PostgresDatabase) -> int:
    """Create or migrate the `ops` schema; returns its version."""
    engine = catalog.engine_for(ops_db)
    try:
        return catalog.migrate(engine, ops_db)
    finally:
        engine.dispose()


@task(name="record-backup-start", cache_policy=NO_CACHE)
def record_backup_start(
    ops_db: PostgresDatabase,
    *,
    backup_id: str,
    kind: str,
    source: str,
    started_at: datetime,
    flow_run_id: str | None,
) -> None:
    """Insert the backup's `running` record."""
    engine = catalog.engine_for(ops_db)
    try:
        catalog.start_record(
            engine,
            backup_id=backup_id,
            kind=kind,
            source=source,
            started_at=started_at,
            flow_run_id=flow_run_id,
        )
    finally:
        engine.dispose()


@task(
    name="record-backup-end",
    retries=2,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
def record_backup_end(ops_db: PostgresDatabase, backup_id: str, **fields: object) -> None:
    """Mark the backup's record `completed` or `failed`."""
    engine = catalog.engine_for(ops_db)
    try:
        catalog.finish_record(engine, backup_id, **fields)  # type: ignore[arg-type]
    finally:
        engine.dispose()
