"""The steps every backup takes, whatever it holds (a database dump, a Redis snapshot,
a configuration bundle), written once.

A producer streams the backup into the primary store and says what it wrote. The rest
is the same for every kind and is what makes a backup trustworthy: the object is read
back and checked, its manifest written, it is copied to every replica and each copy
checked, and only then is it recorded as completed in `ops.backup_records`. A backup
that fails anywhere before that is removed from the primary and recorded as failed;
the flow around it raises a high alert, which the next successful backup resolves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from blocks import BackupStorage, PostgresDatabase
from blocks.storage.manifest import BackupKeys, build_manifest, new_backup_id
from blocks.storage.stores import Digest, ObjectStore
from blocks.storage.verify import VerifiedCopy, expected_encryption
from feedback_ops.errors import OpsError
from flows.locks import system_lock
from tasks.catalog import (
    clear_interrupted_backups,
    open_catalog,
    record_backup_end,
    record_backup_start,
)
from tasks.storage import (
    check_access,
    remove_backup,
    replicate_backup,
    verify_stored_object,
    write_manifest,
)

RUNBOOK_SECTION = "Backup & Recovery Procedures"
STOPPED = "interrupted: the run was stopped (Ctrl-C or cancelled) before the backup finished"


@dataclass(frozen=True)
class Produced:
    """What a producer wrote to the primary store, and what the manifest says of it."""

    size: int
    sha256: str
    started_at: datetime
    finished_at: datetime
    tools: dict[str, str]
    content_format: str
    contents: dict[str, Any] = field(default_factory=dict)
    """Kind-specific manifest fields: `tables` for a database, `databases` for Redis."""

    @property
    def seconds(self) -> float:
        """Wall-clock duration of the producer."""
        return (self.finished_at - self.started_at).total_seconds()


Producer = Callable[[ObjectStore, str, int | None], Produced]
"""Streams one backup into the store under the key given; raises on any failure. The
third argument is the size of the source's previous backup, if any: what its progress
bar measures against."""


@dataclass(frozen=True)
class BackupOf:
    """What a backup is of: its kind, its source, its file suffix, its system's lock."""

    kind: str
    source: str
    suffix: str
    lock: str
    artifact_key: str


@dataclass(frozen=True)
class StoredBackup:
    """A completed backup: verified at the primary and at every replica, recorded."""

    backup_id: str
    produced: Produced
    manifest: dict[str, Any]
    copies: list[VerifiedCopy]

    @property
    def locations(self) -> list[str]:
        """Primary first, then every replica."""
        return [copy.url for copy in self.copies]


def take_backup(
    what: BackupOf, storage: BackupStorage, ops_db: PostgresDatabase, produce: Producer
) -> StoredBackup:
    """Produce one backup and carry it to completed, in the runbook's order, or leave
    nothing behind.

    Raises:
        OpsError: storage unreachable, the producer failed, a read-back did not match,
            or a replica could not be written (the primary copy is then kept).
    """
    primary, replicas = storage.primary(), storage.replicas()
    # 1. One backup, restore or failover of a system at a time. Taken before any task
    # runs: a SQLite-backed Prefect server answers the slot request only once it has
    # written the previous task run's states, up to 2 s later.
    with system_lock(what.lock):
        # 2. Every location can be written, before anything is recorded.
        for store in (primary, *replicas):
            check_access(store)
        # 3. The catalog exists, and records the backup as running. What a run of this
        # backup that died left (holding the lock, this run knows it is dead) is
        # marked failed and swept first.
        open_catalog(ops_db)
        _clear_what_a_dead_run_left(what, ops_db, (primary, *replicas))
        started = datetime.now(UTC)
        backup_id = new_backup_id(what.kind, started)
        keys = BackupKeys.for_backup(what.kind, backup_id, started, what.suffix)
        previous_size = record_backup_start(
            ops_db,
            backup_id=backup_id,
            kind=what.kind,
            source=what.source,
            started_at=started,
            flow_run_id=str(flow_run.id) if flow_run.id else None,
        )
        get_run_logger().info("Backing up %s to %s as %s", what.source, primary.location, backup_id)
        try:
            # 4–6. Stream it in, read it back, write its manifest.
            produced, manifest, primary_copy = _stored_and_described(
                what, produce, primary, keys, backup_id, started, previous_size
            )
            # 7. Copy it to every replica and check each copy.
            copies = [primary_copy, *_replicated(primary, replicas, keys, produced, manifest)]
        except Exception as exc:
            _record_failure(what, ops_db, backup_id, exc)
            raise
        except BaseException:
            # Ctrl-C or a cancellation: no task can start any more, the record must
            # still say the backup did not finish.
            finish_record_now(ops_db, backup_id, STOPPED)
            raise
        # 8. Only now is it completed.
        record_backup_end(
            ops_db,
            backup_id,
            status="completed",
            finished_at=datetime.now(UTC),
            locations=[copy.url for copy in copies],
            size=produced.size,
            sha256=produced.sha256,
            manifest=manifest,
        )
    return StoredBackup(backup_id, produced, manifest, copies)


def _clear_what_a_dead_run_left(
    what: BackupOf, ops_db: PostgresDatabase, stores: tuple[ObjectStore, ...]
) -> None:
    interrupted, swept = clear_interrupted_backups(
        ops_db, list(stores), kind=what.kind, source=what.source
    )
    if interrupted or swept:
        get_run_logger().warning(
            "A %s backup of %s was interrupted before: marked failed %s; removed %s",
            what.kind,
            what.source,
            ", ".join(interrupted) or "no record",
            ", ".join(swept) or "no unfinished upload",
        )


def _stored_and_described(
    what: BackupOf,
    produce: Producer,
    primary: ObjectStore,
    keys: BackupKeys,
    backup_id: str,
    started: datetime,
    previous_size: int | None,
) -> tuple[Produced, dict[str, Any], VerifiedCopy]:
    """The backup in the primary store, read back, with its manifest beside it; on any
    failure neither object nor manifest is left where a restore would find them."""
    try:
        produced = produce(primary, keys.object, previous_size)
        primary_copy = verify_stored_object(
            primary, keys.object, Digest(produced.size, produced.sha256)
        )
        manifest = build_manifest(
            backup_id=backup_id,
            kind=what.kind,
            source=what.source,
            object_name=keys.object.rsplit("/", 1)[1],
            created_at=started,
            finished_at=produced.finished_at,
            size=produced.size,
            sha256=produced.sha256,
            encryption=expected_encryption(primary),
            tools=produced.tools,
            content_format=produced.content_format,
            contents=produced.contents,
        )
        write_manifest(primary, keys, manifest)
    except BaseException:
        _remove(primary, keys)
        raise
    return produced, manifest, primary_copy


def _replicated(
    primary: ObjectStore,
    replicas: list[ObjectStore],
    keys: BackupKeys,
    produced: Produced,
    manifest: dict[str, Any],
) -> list[VerifiedCopy]:
    """Every replica's checked copy, written side by side.

    Raises:
        OpsError: naming each replica that failed; the verified primary is kept.
    """
    digest = Digest(produced.size, produced.sha256)
    futures = [
        replicate_backup.submit(primary, replica, keys, digest, manifest) for replica in replicas
    ]
    copies, failures = [], []
    for replica, future in zip(replicas, futures, strict=True):
        try:
            copies.append(future.result())
        except Exception as exc:
            failures.append(f"{replica.location}: {exc}")
    if failures:
        raise OpsError(
            f"backup {manifest['id']} is stored and verified at "
            f"{primary.url_for(keys.object)}, but replication failed: {'; '.join(failures)}"
        )
    return copies


def finish_record_now(ops_db: PostgresDatabase, backup_id: str, reason: str) -> None:
    """Mark the record failed without a task (the run is being stopped)."""
    record_backup_end.fn(
        ops_db, backup_id, status="failed", finished_at=datetime.now(UTC), error=reason
    )


def _remove(store: ObjectStore, keys: BackupKeys) -> None:
    try:
        remove_backup(store, keys)
    except BaseException:
        # A run being cancelled cannot start a task any more; the removal still must happen.
        remove_backup.fn(store, keys)


def _record_failure(
    what: BackupOf, ops_db: PostgresDatabase, backup_id: str, exc: Exception
) -> None:
    record_backup_end(
        ops_db, backup_id, status="failed", finished_at=datetime.now(UTC), error=str(exc)
    )
    create_markdown_artifact(
        key=what.artifact_key,
        description=f"Backup {backup_id}: failed",
        markdown=f"# Backup `{backup_id}` — failed\n\nSource `{what.source}`.\n\n**Reason:** {exc}",
    )


def locations_table(copies: list[VerifiedCopy]) -> str:
    """The markdown table of where a backup is and how each copy checked out."""
    rows = "\n".join(
        f"| {'primary' if i == 0 else 'replica'} | `{c.url}` | {c.size} | "
        f"{c.encryption or 'none (local)'} | verified |"
        for i, c in enumerate(copies)
    )
    return (
        "| role | location | bytes | server-side encryption | check |\n"
        "|---|---|---|---|---|\n" + rows
    )
