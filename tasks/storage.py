"""Tasks on backup storage: check access, read back and check, write manifests,
replicate, find and list backups, remove them, and make sure the backup region holds
the newest of each kind."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from blocks.storage.manifest import (
    BackupKeys,
    dump_manifest,
    find_manifest,
    load_manifest,
    manifest_keys,
    object_key_of,
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
from feedback_ops.errors import ConfigError, OpsError
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


# --- the backup region ---------------------------------------------------------------
# Runbook, "Scenario 3: Regional Infrastructure Failure": the backup region must hold
# the newest backups before traffic moves there. Its bucket is one more store: the same
# keys, the same manifests, each copy read back and checked like a replica's.

BACKUP_KINDS: tuple[str, ...] = ("database", "redis", "pos-config", "app-config")
"""Every kind of backup the flows take (database-backup, redis-snapshot, the two
configuration backups): each key's first folder."""


@dataclass(frozen=True)
class RegionCopy:
    """One backup the backup region must hold: the newest of its kind at the primary."""

    kind: str
    backup_id: str
    created_at: datetime
    keys: BackupKeys
    size: int
    sha256: str
    manifest: dict[str, Any]
    source_url: str
    """The object at the primary."""
    target_url: str
    """The object in the backup region."""


@dataclass(frozen=True)
class RegionBackupPlan:
    """What `ensure-backups-in-region` will check, and copy where it must."""

    target: str
    """The backup region's location."""
    copies: list[RegionCopy] = field(default_factory=list)
    no_backup: list[str] = field(default_factory=list)
    """Kinds with no backup at the primary at all: nothing to copy."""


@dataclass(frozen=True)
class RegionBackup:
    """A backup the backup region holds now, read back and matching its manifest."""

    kind: str
    backup_id: str
    created_at: datetime
    action: Literal["present", "copied"]
    """`present`: it was there already; `copied`: the object or manifest was written."""
    verified: bool
    url: str
    size: int


def region_copies(
    primary: ObjectStore, target: ObjectStore, newest: Iterable[tuple[dict[str, Any], BackupKeys]]
) -> list[RegionCopy]:
    """The checks (and, where needed, copies) for the given backups: pure, for a dry run's
    checklist and the approval form."""
    return [
        RegionCopy(
            kind=str(manifest["kind"]),
            backup_id=str(manifest["id"]),
            created_at=datetime.fromisoformat(manifest["created_at"]),
            keys=keys,
            size=int(manifest["size"]),
            sha256=str(manifest["sha256"]),
            manifest=manifest,
            source_url=primary.url_for(keys.object),
            target_url=target.url_for(keys.object),
        )
        for manifest, keys in newest
    ]


@step("plan-backups-in-region", limit=QUICK)
def plan_backups_in_region(
    primary: ObjectStore, target: ObjectStore, kinds: Sequence[str] = BACKUP_KINDS
) -> RegionBackupPlan:
    """The newest backup of each kind at the primary (its manifest says it was read back
    and matched), as the plan the operator approves; reads the primary, writes nothing.

    Raises:
        OpsError: a newest manifest cannot be read.
    """
    newest, no_backup = [], []
    for kind in kinds:
        names = manifest_keys(primary, f"{kind}/")
        if not names:
            no_backup.append(kind)
            continue
        try:
            manifest = load_manifest(primary.get_bytes(names[-1]))
        except ValueError as exc:
            raise OpsError(f"{primary.url_for(names[-1])} cannot be read: {exc}") from None
        newest.append((manifest, BackupKeys(object_key_of(names[-1], manifest), names[-1])))
    return RegionBackupPlan(str(target.location), region_copies(primary, target, newest), no_backup)


@step("ensure-backups-in-region", limit=TRANSFER)
def ensure_backups_in_region(
    primary: ObjectStore, target: ObjectStore, plan: RegionBackupPlan
) -> list[RegionBackup]:
    """Make the backup region hold every backup of the plan, each read back whole.

    A copy already there whose object reads back as the manifest says, beside the same
    manifest, is `present`. A missing or damaged object is copied again (its stale
    manifest removed first, so no manifest ever describes a half-written copy) and
    checked; a missing or different manifest is rewritten. Running it again after a
    failure finishes the job; run twice, the second run finds everything present.

    Raises:
        OpsError: a copy did not read back as its manifest says (it is removed again),
            or the backup region's store cannot be written.
    """
    if str(target.location) != plan.target:
        raise ConfigError(
            f"the plan was made for {plan.target}, not {target.location}: start a new run"
        )
    held = []
    for copy in plan.copies:
        digest = Digest(copy.size, copy.sha256)
        object_ok = _reads_back(target, copy.keys.object, digest)
        manifest_ok = _manifest_of(target, copy.keys.manifest) == copy.manifest
        if not object_ok:
            target.delete(copy.keys.manifest)
            replicate_backup.fn(primary, target, copy.keys, digest, copy.manifest)
        elif not manifest_ok:
            target.put_bytes(copy.keys.manifest, dump_manifest(copy.manifest))
            if _manifest_of(target, copy.keys.manifest) != copy.manifest:
                url = target.url_for(copy.keys.manifest)
                raise OpsError(f"{url} does not read back as it was written")
        held.append(
            RegionBackup(
                kind=copy.kind,
                backup_id=copy.backup_id,
                created_at=copy.created_at,
                action="present" if object_ok and manifest_ok else "copied",
                verified=True,
                url=copy.target_url,
                size=copy.size,
            )
        )
    return held


def _reads_back(store: ObjectStore, key: str, expected: Digest) -> bool:
    """Whether the object is there and matches (size, sha256, encryption); False when
    missing or different, while a store that cannot be reached still raises."""
    try:
        check_stored(store, key, expected)
    except FileNotFoundError:
        return False
    except OpsError as exc:
        # A plain OpsError is check_stored's mismatch; its kin (access denied, throttled,
        # timed out) say nothing about the copy and must not make a new one.
        if type(exc) is not OpsError:
            raise
        return False
    return True


def _manifest_of(store: ObjectStore, key: str) -> dict[str, Any] | None:
    """The manifest stored under `key`; None when missing or unreadable."""
    try:
        return load_manifest(store.get_bytes(key))
    except FileNotFoundError:
        return None
    except ValueError:
        return None
