"""Tasks on backup storage: check access, read back and check, write manifests,
replicate, find and list backups, remove them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from blocks.storage.manifest import (
    BackupKeys,
    dump_manifest,
    find_manifest,
    load_manifest,
    manifest_keys,
)
from blocks.storage.stores import (
    ChunkStream,
    Digest,
    HashingReader,
    ObjectInfo,
    ObjectStore,
    Unfinished,
)
from blocks.storage.verify import VerifiedCopy, check_stored
from tasks import QUICK, TRANSFER, step


@dataclass(frozen=True)
class Manifests:
    """Every manifest found below a store's root, oldest backup first."""

    found: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(manifest key, manifest) of each manifest that could be read."""
    unreadable: list[str] = field(default_factory=list)
    """`url: reason` of each that could not."""


@step("check-storage-access", limit=QUICK)
def check_access(store: ObjectStore) -> str:
    """Fail early, with the reason, when the store cannot be written; returns its place."""
    store.check_access()
    return str(store.location)


@step("store-object", limit=TRANSFER)
def store_bytes(store: ObjectStore, key: str, data: bytes) -> Digest:
    """Write a small object (a configuration bundle) atomically; returns what was stored."""
    reader = HashingReader(ChunkStream(iter((data,))))
    store.upload_stream(key, reader)
    return reader.digest


@step("verify-stored-object", limit=TRANSFER)
def verify_stored_object(store: ObjectStore, key: str, expected: Digest) -> VerifiedCopy:
    """Read the stored object back and check its size, sha256 and encryption."""
    return check_stored(store, key, expected)


@step("write-manifest", limit=QUICK)
def write_manifest(store: ObjectStore, keys: BackupKeys, manifest: dict[str, Any]) -> str:
    """Write the manifest beside its object; returns the manifest's URL."""
    store.put_bytes(keys.manifest, dump_manifest(manifest))
    return store.url_for(keys.manifest)


@step("replicate-backup", limit=TRANSFER)
def replicate_backup(
    primary: ObjectStore,
    replica: ObjectStore,
    keys: BackupKeys,
    expected: Digest,
    manifest: dict[str, Any],
) -> VerifiedCopy:
    """Copy a verified backup to a replica, check the copy like the primary, then write
    its manifest there. A copy that does not check out is removed again."""
    try:
        replica.copy_from(primary, keys.object)
        copy = check_stored(replica, keys.object, expected)
        replica.put_bytes(keys.manifest, dump_manifest(manifest))
    except BaseException:
        replica.delete(keys.manifest)
        replica.delete(keys.object)
        raise
    return copy


@step("remove-unverified-backup", limit=QUICK)
def remove_backup(store: ObjectStore, keys: BackupKeys) -> None:
    """Remove a backup's manifest and object, so nothing unverified stays where a restore
    would find it. Removing what is not there is not an error."""
    store.delete(keys.manifest)
    store.delete(keys.object)


@step("delete-backup", limit=QUICK)
def delete_backup(
    primary: ObjectStore, replicas: list[ObjectStore], manifest_key: str, object_key: str
) -> None:
    """Delete one backup's object and manifest at every replica, then at the primary
    (manifest last, so a deletion cut short is found and finished by the next run)."""
    for store in (*replicas, primary):
        store.delete(object_key)
        store.delete(manifest_key)


@step("find-backup", limit=QUICK)
def find_backup(
    store: ObjectStore, backup_id: str, before: datetime | None, kind: str
) -> tuple[dict[str, Any], BackupKeys]:
    """The manifest and keys of a backup of `kind`: by id, the newest ("latest"), or the
    newest taken before `before` (Stockholm time when naive)."""
    return find_manifest(store, backup_id, before, kind=kind)


@step("read-manifests", limit=QUICK)
def read_manifests(store: ObjectStore) -> Manifests:
    """Every manifest in the store, oldest first, and those that could not be read."""
    listing = Manifests()
    for key in manifest_keys(store):
        try:
            listing.found.append((key, load_manifest(store.get_bytes(key))))
        except ValueError as exc:
            listing.unreadable.append(f"{store.url_for(key)}: {exc}")
    return listing


@step("list-stored-keys", limit=QUICK)
def list_keys(store: ObjectStore) -> set[str]:
    """Every key the store holds."""
    return set(store.list_keys())


@step("read-copy", limit=QUICK)
def read_copy(
    store: ObjectStore, manifest_key: str, object_key: str
) -> tuple[ObjectInfo, dict[str, Any]] | None:
    """What a store holds of one backup: the object's size and encryption and the
    manifest beside it; None when either is missing."""
    try:
        return store.stat(object_key), load_manifest(store.get_bytes(manifest_key))
    except FileNotFoundError:
        return None


@step("read-object-info", limit=QUICK)
def read_info(store: ObjectStore, object_key: str) -> ObjectInfo | None:
    """Size and server-side encryption of a stored object; None when it is missing."""
    try:
        return store.stat(object_key)
    except FileNotFoundError:
        return None


@step("find-unfinished-uploads", limit=QUICK)
def find_unfinished(store: ObjectStore, prefix: str = "") -> list[Unfinished]:
    """Uploads below `prefix` that were never finished (`.partial-*` files, open S3
    multipart uploads): a live backup's own, or what a killed run left."""
    return store.unfinished(prefix)
