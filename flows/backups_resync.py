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

from blocks import BackupStorage, load_block
from feedback_ops.config import BACKUP_STORAGE_BLOCK, OPS_DATABASE_BLOCK
from feedback_ops.errors import OpsError
from tasks import catalog
from tasks.manifest import load_manifest, manifest_keys, object_key_of
from tasks.notify import ops_catalog


class ResyncResult(BaseModel):
    """What `feedback-ops run backups-resync --json` prints as `result`."""

    manifests: int
    inserted: int
    refreshed: int


@flow(name="backups-resync")
def backups_resync(
    storage_block: str = BACKUP_STORAGE_BLOCK, ops_database_block: str = OPS_DATABASE_BLOCK
) -> ResyncResult:
    """Rebuild `ops.backup_records` from the manifests in the backup storage.

    Every manifest becomes a `completed` record (existing ones are refreshed, their
    verification results kept), with the primary location and every replica that
    holds the object. A manifest that cannot be read fails the run, named.
    """
    logger = get_run_logger()
    storage = load_block(BackupStorage, storage_block)
    primary, replicas = storage.primary(), storage.replicas()
    held = [set(replica.list_keys()) for replica in replicas]
    names = manifest_keys(primary)
    inserted = refreshed = 0
    unreadable: list[str] = []
    with ops_catalog(ops_database_block) as engine:
        for name in names:
            try:
                manifest = load_manifest(primary.get_bytes(name))
            except ValueError as exc:
                unreadable.append(f"{primary.url_for(name)}: {exc}")
                continue
            key = object_key_of(name, manifest)
            locations = [primary.url_for(key)] + [
                r.url_for(key) for r, keys in zip(replicas, held, strict=True) if key in keys
            ]
            created = datetime.fromisoformat(manifest["created_at"])
            finished = datetime.fromisoformat(manifest["finished_at"])
            new = catalog.upsert_from_manifest(
                engine,
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
                },
            )
            inserted += new
            refreshed += not new
    logger.info("%d manifests: %d inserted, %d refreshed", len(names), inserted, refreshed)
    create_markdown_artifact(
        key="backups-resync",
        description=f"{len(names)} manifests, {inserted} inserted, {refreshed} refreshed",
        markdown=f"Read {len(names)} manifests in `{primary.location}`: {inserted} records "
        f"inserted, {refreshed} refreshed, {len(unreadable)} unreadable."
        + "".join(f"\n- {u}" for u in unreadable),
    )
    if unreadable:
        raise OpsError(f"{len(unreadable)} manifest(s) could not be read: {unreadable[0]}")
    return ResyncResult(manifests=len(names), inserted=inserted, refreshed=refreshed)
