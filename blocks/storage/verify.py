"""Reading a stored backup back: is it what was written, and encrypted as asked?

A backup is only called completed once its object was read back from storage whole and
its size, sha256 and server-side encryption matched; the same check guards every
replica, every verification and every restore.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blocks.storage.stores import Digest, LocalStore, ObjectStore, S3Store, digest_chunks
from feedback_ops.errors import OpsError


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


@contextmanager
def local_copy(store: ObjectStore, key: str, expected: Digest) -> Iterator[Path]:
    """The object as a local file a tool can seek in, checked against `expected`.

    A local store's file is used where it is; anything else is streamed once into a
    temporary file, hashing on the way, and removed afterwards.
    """
    if isinstance(store, LocalStore):
        path = store.root / key
        _same(store.url_for(key), digest_chunks(store.read_chunks(key)), expected)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="fo-copy-") as tmp:
        path = Path(tmp) / Path(key).name
        with open(path, "wb") as out:

            def tee() -> Iterator[bytes]:
                for chunk in store.read_chunks(key):
                    out.write(chunk)
                    yield chunk

            actual = digest_chunks(tee())
        _same(store.url_for(key), actual, expected)
        yield path


def _same(url: str, actual: Digest, expected: Digest) -> None:
    if actual != expected:
        raise OpsError(
            f"{url} reads back as {actual.size} bytes sha256 {actual.sha256[:12]}…, "
            f"but its manifest says {expected.size} bytes sha256 {expected.sha256[:12]}…"
        )
