"""The logical Redis snapshot format: every key as Redis' own DUMP payload.

A DUMP payload is the key's value in RDB encoding with Redis' own version and CRC64,
so every type (strings, hashes, lists, sets, sorted sets, streams, modules' types) is
kept exactly and RESTORE checks each one as it loads it. The file is a stream of
records so that neither writing nor reading needs more than one batch in memory:

    header   b"FOREDIS\\x01"
    select   b"S" db:u32                       every key after it is in database db
    key      b"K" keylen:u32 expire:i64 payloadlen:u32 key payload
             expire is the absolute Unix time in ms, -1 for a key without TTL
    end      b"E" keys:u64                     the number of key records before it

Integers are big-endian. The end record makes a truncated file fail loudly even
before its sha256 is compared.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from feedback_ops.errors import OpsError

MAGIC = b"FOREDIS\x01"
CONTENT_FORMAT = "redis-logical-v1"
_SELECT = struct.Struct(">cI")
_KEY = struct.Struct(">cIqI")
_END = struct.Struct(">cQ")
NO_EXPIRY = -1


@dataclass(frozen=True)
class KeyRecord:
    """One key as it was dumped."""

    db: int
    key: bytes
    expire_at_ms: int
    payload: bytes


def select_record(db: int) -> bytes:
    """The record that starts database `db`."""
    return _SELECT.pack(b"S", db)


def key_record(key: bytes, expire_at_ms: int, payload: bytes) -> bytes:
    """The record of one key."""
    return _KEY.pack(b"K", len(key), expire_at_ms, len(payload)) + key + payload


def end_record(keys: int) -> bytes:
    """The closing record, with the number of keys written."""
    return _END.pack(b"E", keys)


class _Reader:
    """Exact-size reads over a stream of chunks, keeping at most one chunk buffered."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""
        self._pos = 0
        self.offset = 0

    def read(self, size: int) -> bytes:
        if len(self._buffer) - self._pos >= size:
            data = self._buffer[self._pos : self._pos + size]
            self._pos += size
        else:
            parts = [self._buffer[self._pos :]]
            have = len(parts[0])
            while have < size:
                chunk = next(self._chunks, None)
                if chunk is None:
                    raise OpsError(
                        f"the snapshot ends early, at byte {self.offset + have}: truncated"
                    )
                parts.append(chunk)
                have += len(chunk)
            joined = b"".join(parts)
            data, self._buffer, self._pos = joined[:size], joined, size
        self.offset += size
        return data

    def at_end(self) -> bool:
        if self._pos < len(self._buffer):
            return False
        for chunk in self._chunks:
            if chunk:
                self._buffer, self._pos = chunk, 0
                return False
        return True


def read_records(chunks: Iterable[bytes]) -> Iterator[KeyRecord]:
    """Every key record of a logical snapshot, checking its structure on the way.

    Raises:
        OpsError: not a logical snapshot, truncated, or its end record disagrees.
    """
    reader = _Reader(chunks)
    if reader.read(len(MAGIC)) != MAGIC:
        raise OpsError("not a feedback-ops logical Redis snapshot (wrong header)")
    db = 0
    keys = 0
    while True:
        tag = reader.read(1)
        if tag == b"S":
            (db,) = struct.unpack(">I", reader.read(4))
        elif tag == b"K":
            key_len, expire, payload_len = struct.unpack(">IqI", reader.read(16))
            key = reader.read(key_len)
            yield KeyRecord(db, key, expire, reader.read(payload_len))
            keys += 1
        elif tag == b"E":
            (written,) = struct.unpack(">Q", reader.read(8))
            if written != keys:
                raise OpsError(f"the snapshot says it holds {written} keys but has {keys}")
            if not reader.at_end():
                raise OpsError(f"the snapshot has bytes after its end, at byte {reader.offset}")
            return
        else:
            raise OpsError(f"the snapshot is corrupt at byte {reader.offset - 1}: tag {tag!r}")
