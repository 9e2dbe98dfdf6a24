"""Tasks on backup storage: read back and check, write manifests, replicate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from feedback_ops.errors import OpsError
from tasks.manifest import BackupKeys, dump_manifest
from tasks.object_store import Digest, ObjectStore, S3Store, digest_chunks
from tasks.retry import RETRY_DELAYS, retry_if_transient


@dataclass(frozen=True)
class VerifiedCopy:
    """A stored object whose size, sha256 and encryption were read back and matched."""

    url: str
    size: int
    sha256: str
    encryption: str | None


def expected_encryption(store: ObjectStore) -> dict[str, Any]:
    """What the manifest records about encryption at rest for this store."""
    if isinstance(store, S3Store) and store.settings.sse:
        kms = store.settings.kms_key_id if store.settings.sse == "aws:kms" else None
        return {"server_side": store.settings.sse, "kms_key_id": kms}
    return {"server_side": None, "kms_key_id": None}


def check_stored(store: ObjectStore, key: str, expected: Digest) -> VerifiedCopy:
    """Read an object back whole and compare it with what was written.

    Raises:
        OpsError: size, sha256 or server-side encryption differ from what was asked.
    """
    url = store.url_for(key)
    info = store.stat(key)
    if info.size != expected.size:
        raise OpsError(f"{url} holds {info.size} bytes, expected {expected.size}")
    want = expected_encryption(store)
    if want["server_side"] and info.encryption != want["server_side"]:
        raise OpsError(
            f"{url} is not encrypted as asked: server-side encryption is "
            f"{info.encryption or 'none'}, expected {want['server_side']}"
        )
    kms = want["kms_key_id"]
    if kms and not (info.kms_key_id or "").endswith(kms):
        raise OpsError(f"{url} is encrypted with another KMS key than {kms}")
    actual = digest_chunks(store.read_chunks(key))
    if actual != expected:
        raise OpsError(
            f"{url} reads back as {actual.size} bytes sha256 {actual.sha256[:12]}…, "
            f"written as {expected.size} bytes sha256 {expected.sha256[:12]}…"
        )
    return VerifiedCopy(url, actual.size, actual.sha256, info.encryption)


@task(
    name="verify-stored-object",
    retries=2,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
def verify_stored_object(store: ObjectStore, key: str, expected: Digest) -> VerifiedCopy:
    """Read the stored object back and check its size, sha256 and encryption."""
    return check_stored(store, key, expected)


@task(
    name="write-manifest",
    retries=2,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
def write_manifest(store: ObjectStore, keys: BackupKeys, manifest: dict[str, Any]) -> str:
    """Write the manifest beside its object; returns the manifest's URL."""
    store.put_bytes(keys.manifest, dump_manifest(manifest))
    return store.url_for(keys.manifest)


@task(
    name="replicate-backup",
    retries=2,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
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
