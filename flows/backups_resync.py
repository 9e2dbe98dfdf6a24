"""Rebuild `ops.backup_records` from the manifests in storage.

The manifests are the catalog of record; the table mirrors them for queries and
reports. After the ops database was lost, restored or edited by hand, this puts every
backup the storage holds back into the table, with the replicas that hold a copy.
"""

from __future__ import annotations

from datetime import datetime

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel

from blocks import BackupStorage, PostgresDatabase, load_block
from blocks.names import BACKUP_STORAGE_BLOCK, OPS_DATABASE_BLOCK
from blocks.storage.manifest import object_key_of
from feedback_ops.errors import OpsError
from flows.parameters import BlockName
from tasks.catalog import upsert_backup_records
from tasks.storage import list_keys, read_manifests


class ResyncResult(BaseModel):
    """What `feedback-ops run backups-resync --json` prints as `result`."""

    manifests: int
    inserted: int
    refreshed: int


@flow(name="backups-resync")
def backups_resync(
    storage_block: BlockName = BACKUP_STORAGE_BLOCK, ops_database_block: str = OPS_DATABASE_BLOCK
) -> ResyncResult:
    """Rebuild `ops.backup_records` from the manifests in the backup storage.

    Every manifest becomes a `completed` record (existing ones are refreshed, their
    verification results kept), with the primary location and every replica that
    holds the object. A manifest that cannot be read fails the run, named.

    Args:
        storage_block: Name of the Backup Storage block: the primary location of the
            backups and their replicas.
        ops_database_block: Name of the Postgres Database block of the ops catalog
            (`ops.backup_records`, alerts).
    """
    logger = get_run_logger()
    storage = load_block(BackupStorage, storage_block)
    primary, replicas = storage.primary(), storage.replicas()
    held = [list_keys(replica) for replica in replicas]
    listing = read_manifests(primary)
    records = []
    for name, manifest in listing.found:
        key = object_key_of(name, manifest)
        locations = [primary.url_for(key)] + [
            r.url_for(key) for r, keys in zip(replicas, held, strict=True) if key in keys
        ]
        created = datetime.fromisoformat(manifest["created_at"])
        finished = datetime.fromisoformat(manifest["finished_at"])
        records.append(
            {
                "id": manifest["id"],
                "kind": manifest["kind"],
                "status": "completed",
                "source": manifest["source"],
                "locations": locations,
                "size": manifest["size"],
                "sha256": manifest["sha256"],
                "started_at": created,
                "finished_at": finished,
                "duration_seconds": (finished - created).total_seconds(),
                "manifest": manifest,
                "error": None,
            }
        )
    inserted = upsert_backup_records(load_block(PostgresDatabase, ops_database_block), records)
    refreshed = len(records) - inserted
    unreadable = listing.unreadable
    manifests = len(listing.found) + len(unreadable)
    logger.info("%d manifests: %d inserted, %d refreshed", manifests, inserted, refreshed)
    create_markdown_artifact(
        key="backups-resync",
        description=f"{manifests} manifests, {inserted} inserted, {refreshed} refreshed",
        markdown=f"Read {manifests} manifests in `{primary.location}`: {inserted} records "
        f"inserted, {refreshed} refreshed, {len(unreadable)} unreadable."
        + "".join(f"\n- {u}" for u in unreadable),
    )
    if unreadable:
        raise OpsError(f"{len(unreadable)} manifest(s) could not be read: {unreadable[0]}")
    return ResyncResult(manifests=manifests, inserted=inserted, refreshed=refreshed)
