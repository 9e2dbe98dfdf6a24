"""The steps every backup takes, whatever it holds (a database dump, a Redis snapshot,
a configuration bundle).

A producer streams the backup into the primary store and says what it wrote. The rest
is the same for every kind and is what makes a backup trustworthy: the object is read
back and checked, its manifest written, it is copied to every replica and each copy
checked, and only then is it recorded as completed in `ops.backup_records`. A backup
that fails anywhere before that is removed from the primary, recorded as failed, raises
a high alert, and the next successful backup resolves that alert.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from blocks import BackupStorage, PostgresDatabase
from feedback_ops.errors import OpsError
from policy import Severity
from tasks.locks import system_lock
from tasks.manifest import BackupKeys, build_manifest, new_backup_id
from tasks.notify import Alert, raise_alert_beside, resolve_alert
from tasks.object_store import Digest, ObjectStore
from tasks.postgres import open_catalog, record_backup_end, record_backup_start
from tasks.storage import (
    VerifiedCopy,
    expected_encryption,
    replicate_backup,
    verify_stored_object,
    write_manifest,
)

RUNBOOK_SECTION = "Backup & Recovery Procedures"


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


Producer = Callable[[ObjectStore, str], Produced]
"""Streams one backup into the store under the key given; raises on any failure."""


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
    *,
    kind: str,
    source: str,
    suffix: str,
    lock: str,
    artifact_key: str,
    storage: BackupStorage,
    ops_db: PostgresDatabase,
    produce: Producer,
) -> StoredBackup:
    """Produce one backup of `kind` and carry it to completed, or leave nothing behind.

    Raises:
        OpsError: storage unreachable, the producer failed, a read-back did not match,
            or a replica could not be written (the primary copy is then kept).
    """
    logger = get_run_logger()
    primary, replicas = storage.primary(), storage.replicas()
    for store in (primary, *replicas):
        store.check_access()
    with system_lock(lock):
        open_catalog(ops_db)
        started = datetime.now(UTC)
        backup_id = new_backup_id(kind, started)
        keys = BackupKeys.for_backup(kind, backup_id, started, suffix)
        record_backup_start(
            ops_db,
            backup_id=backup_id,
            kind=kind,
            source=source,
            started_at=started,
            flow_run_id=str(flow_run.id) if flow_run.id else None,
        )
        logger.info("Backing up %s to %s as %s", source, primary.location, backup_id)
        try:
            produced, manifest, copies = _store_and_replicate(
                produce, primary, replicas, keys, backup_id, kind, source, started
            )
        except Exception as exc:
            record_backup_end(
                ops_db, backup_id, status="failed", finished_at=datetime.now(UTC), error=str(exc)
            )
            create_markdown_artifact(
                key=artifact_key,
                description=f"Backup {backup_id}: failed",
                markdown=f"# Backup `{backup_id}` — failed\n\nSource `{source}`.\n\n"
                f"**Reason:** {exc}",
            )
            raise
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


def _store_and_replicate(
    produce: Producer,
    primary: ObjectStore,
    replicas: list[ObjectStore],
    keys: BackupKeys,
    backup_id: str,
    kind: str,
    source: str,
    started: datetime,
) -> tuple[Produced, dict[str, Any], list[VerifiedCopy]]:
    """The runbook's steps for one backup; returns what was produced, the manifest and
    the checked copies."""
    try:
        produced = produce(primary, keys.object)
        digest = Digest(produced.size, produced.sha256)
        primary_copy = verify_stored_object(primary, keys.object, digest)
        manifest = build_manifest(
            backup_id=backup_id,
            kind=kind,
            source=source,
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
        # Nothing unverified may stay where a restore would find it.
        primary.delete(keys.manifest)
        primary.delete(keys.object)
        raise
    futures = [
        replicate_backup.submit(primary, replica, keys, digest, manifest) for replica in replicas
    ]
    copies = [primary_copy]
    failures = []
    for replica, future in zip(replicas, futures, strict=True):
        try:
            copies.append(future.result())
        except Exception as exc:
            failures.append(f"{replica.location}: {exc}")
    if failures:
        raise OpsError(
            f"backup {backup_id} is stored and verified at {primary_copy.url}, but replication "
            f"failed: {'; '.join(failures)}"
        )
    return produced, manifest, copies


@contextmanager
def alerting_on_failure(
    *, condition: str, alert_name: str, what: str, details: dict[str, Any], ops_database_block: str
) -> Iterator[None]:
    """A failure inside raises a high alert (and is re-raised); success resolves it.

    A failure to alert is logged beside the original failure and never hides it.
    """
    try:
        yield
    except Exception as exc:
        raise_alert_beside(
            Alert(
                name=alert_name,
                severity=Severity.HIGH,
                summary=f"{what} failed: {exc}",
                details={**details, "reason": str(exc)},
                dedup_key=condition,
                runbook_section=RUNBOOK_SECTION,
            ),
            ops_database_block,
        )
        raise
    resolve_alert(condition, ops_database_block=ops_database_block)


def human_size(size: float) -> str:
    """`1.5 MiB`: a byte count for people."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    raise AssertionError("unreachable")


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
