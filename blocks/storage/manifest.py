"""Backup manifests: the JSON beside every backup object, the catalog of record.

A restore after the loss of the database needs nothing but the storage: the manifest
says what the object is, how big, its sha256, what it holds and how it was made.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from blocks.storage.stores import ObjectStore
from feedback_ops.errors import OpsError
from policy import STOCKHOLM

MANIFEST_FORMAT = 1
MANIFEST_SUFFIX = ".manifest.json"

RetentionClass = Literal["daily", "weekly", "monthly"]


BACKUP_ID = r"[a-z]+(-[a-z]+)*-[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}"
"""The shape of `new_backup_id`'s ids, as a regular expression (no anchors)."""
_BACKUP_ID = re.compile(f"^{BACKUP_ID}")


def backup_id_of(key: str) -> str | None:
    """The backup id an object's key names (`database/2027/03/<id>.dump`), if any."""
    match = _BACKUP_ID.match(key.rsplit("/", 1)[-1])
    return match.group(0) if match else None


def new_backup_id(kind: str, at: datetime) -> str:
    """`database-20270328T010000Z-3fa2c1`: sortable by time, unique, safe in a key."""
    return f"{kind}-{at.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def retention_class(at: datetime) -> RetentionClass:
    """The grandfather-father-son class by Stockholm date: the first of a month is
    monthly, a Sunday weekly, any other day daily."""
    local = at.astimezone(STOCKHOLM)
    if local.day == 1:
        return "monthly"
    if local.weekday() == 6:
        return "weekly"
    return "daily"


@dataclass(frozen=True)
class BackupKeys:
    """Where one backup's object and manifest live, relative to a store's root."""

    object: str
    manifest: str

    @classmethod
    def for_backup(cls, kind: str, backup_id: str, at: datetime, suffix: str) -> BackupKeys:
        """`database/2027/03/<id>.dump` and `database/2027/03/<id>.manifest.json`."""
        folder = f"{kind}/{at.astimezone(UTC):%Y/%m}"
        return cls(f"{folder}/{backup_id}{suffix}", f"{folder}/{backup_id}{MANIFEST_SUFFIX}")


def build_manifest(
    *,
    backup_id: str,
    kind: str,
    source: str,
    object_name: str,
    created_at: datetime,
    finished_at: datetime,
    size: int,
    sha256: str,
    encryption: dict[str, Any],
    tools: dict[str, str],
    content_format: str,
    contents: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest document, the same at the primary location and every replica.

    `contents` adds what the kind's restore checks against: `tables` (rows per table)
    for a database, `databases` (keys per database) for Redis, `sections` for a
    configuration bundle.
    """
    return {
        "manifest_format": MANIFEST_FORMAT,
        "id": backup_id,
        "kind": kind,
        "source": source,
        "object": object_name,
        "format": content_format,
        "created_at": created_at.astimezone(UTC).isoformat(),
        "finished_at": finished_at.astimezone(UTC).isoformat(),
        "size": size,
        "sha256": sha256,
        "encryption": encryption,
        "tools": tools,
        "retention_class": retention_class(created_at),
        **(contents or {}),
    }


def dump_manifest(manifest: dict[str, Any]) -> bytes:
    """Stable, readable JSON bytes."""
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def load_manifest(data: bytes) -> dict[str, Any]:
    """Parse a manifest, refusing documents of an unknown format."""
    manifest: dict[str, Any] = json.loads(data)
    if manifest.get("manifest_format") != MANIFEST_FORMAT:
        raise ValueError(f"unknown manifest format {manifest.get('manifest_format')!r}")
    return manifest


def keys_for_id(backup_id: str, suffix: str = ".dump") -> BackupKeys:
    """Where the backup with this id lives; the id carries its kind and UTC time.

    Raises:
        ValueError: the text is not a backup id.
    """
    kind, sep, rest = backup_id.partition("-")
    stamp = rest.split("-", 1)[0]
    try:
        at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(
            f"{backup_id!r} is not a backup id (like database-20270328T010000Z-3fa2c1)"
        ) from None
    if not sep or not kind:
        raise ValueError(f"{backup_id!r} is not a backup id")
    return BackupKeys.for_backup(kind, backup_id, at, suffix)


def manifest_keys(store: ObjectStore, prefix: str = "") -> list[str]:
    """Keys of every manifest below `prefix`, oldest backup first (ids sort by time)."""
    return sorted(k for k in store.list_keys(prefix) if k.endswith(MANIFEST_SUFFIX))


def object_key_of(manifest_key: str, manifest: dict[str, Any]) -> str:
    """The key of the object a manifest describes: its file beside the manifest."""
    return f"{manifest_key.rsplit('/', 1)[0]}/{manifest['object']}"


def find_manifest(
    store: ObjectStore,
    backup_id: str = "latest",
    before: datetime | None = None,
    kind: str = "database",
) -> tuple[dict[str, Any], BackupKeys]:
    """The manifest and keys of a backup of `kind`: by id, the newest ("latest"), or the
    newest taken before `before` (Stockholm time when naive).

    Raises:
        OpsError: no such backup, one of another kind, no backup at all, or none before
            the time asked for.
    """
    if backup_id not in ("latest", "") and before is None:
        try:
            keys = keys_for_id(backup_id)
        except ValueError as exc:
            raise OpsError(str(exc)) from None
        if not backup_id.startswith(f"{kind}-"):
            raise OpsError(f"{backup_id!r} is not a {kind} backup")
        try:
            return _found(store, keys.manifest)
        except FileNotFoundError:
            raise OpsError(f"no backup {backup_id!r} in {store.location}") from None
    names = manifest_keys(store, f"{kind}/")
    if not names:
        raise OpsError(f"no {kind} backup in {store.location}")
    if before is None:
        return _found(store, names[-1])
    if before.tzinfo is None:
        before = before.replace(tzinfo=STOCKHOLM)
    oldest = None
    for name in reversed(names):
        manifest, keys = _found(store, name)
        created = datetime.fromisoformat(manifest["created_at"])
        oldest = created
        if created < before:
            return manifest, keys
    assert oldest is not None
    raise OpsError(
        f"no {kind} backup before {before.astimezone(STOCKHOLM):%Y-%m-%d %H:%M %Z}; "
        f"the oldest is from {oldest.astimezone(STOCKHOLM):%Y-%m-%d %H:%M %Z}"
    )


def _found(store: ObjectStore, manifest_key: str) -> tuple[dict[str, Any], BackupKeys]:
    manifest = load_manifest(store.get_bytes(manifest_key))
    return manifest, BackupKeys(object_key_of(manifest_key, manifest), manifest_key)
