"""The logical Redis snapshot format: records round-trip, and every damage fails in one line."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

import pytest

from blocks.redis.records import (
    MAGIC,
    NO_EXPIRY,
    KeyRecord,
    end_record,
    key_record,
    read_records,
    select_record,
)
from feedback_ops.errors import OpsError

# Keys before any select record are in database 0; databases need not be in order.
RECORDS = [
    KeyRecord(0, b"session:1", NO_EXPIRY, b"\x00\x05hello\x0b\x00payload-crc"),
    KeyRecord(0, b"", 1_790_000_000_123, b""),
    KeyRecord(3, "fält:å".encode(), NO_EXPIRY, bytes(range(256))),
    KeyRecord(3, b"big", 1_790_000_000_000, b"x" * 70_000),
    KeyRecord(15, b"\x00\xff\n", NO_EXPIRY, b"\x00"),
    KeyRecord(1, b"last", 42, b"p"),
]


def encode(records: Iterable[KeyRecord], *, keys: int | None = None) -> bytes:
    """A logical snapshot of `records`; `keys` overrides the end record's count."""
    parts = [MAGIC]
    db = 0
    written = 0
    for record in records:
        if record.db != db:
            parts.append(select_record(record.db))
            db = record.db
        parts.append(key_record(record.key, record.expire_at_ms, record.payload))
        written += 1
    parts.append(end_record(written if keys is None else keys))
    return b"".join(parts)


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def failure(chunks: Iterable[bytes]) -> str:
    with pytest.raises(OpsError) as caught:
        list(read_records(chunks))
    message = str(caught.value)
    assert "\n" not in message
    return message


SNAPSHOT = encode(RECORDS)


def test_the_layout_is_the_documented_one() -> None:
    assert MAGIC == b"FOREDIS\x01"
    assert select_record(9) == b"S\x00\x00\x00\x09"
    assert key_record(b"ab", NO_EXPIRY, b"xyz") == (
        b"K" + struct.pack(">I", 2) + struct.pack(">q", -1) + struct.pack(">I", 3) + b"abxyz"
    )
    assert end_record(258) == b"E\x00\x00\x00\x00\x00\x00\x01\x02"


@pytest.mark.parametrize("size", [1, 7, len(SNAPSHOT)], ids=["1-byte", "7-bytes", "whole"])
def test_records_round_trip_in_any_chunking(size: int) -> None:
    assert list(read_records(chunked(SNAPSHOT, size))) == RECORDS


def test_records_round_trip_through_uneven_and_empty_chunks() -> None:
    sizes = [3, 0, 1, 9, 0, 0, 17, 2, 65_536, 5]
    chunks: list[bytes] = []
    pos = 0
    while pos < len(SNAPSHOT):
        size = sizes[len(chunks) % len(sizes)]
        chunks.append(SNAPSHOT[pos : pos + size])
        pos += size
    chunks += [b"", b""]  # empty chunks after the end record are no extra bytes

    assert list(read_records(chunks)) == RECORDS


def test_an_empty_snapshot_has_no_records() -> None:
    assert list(read_records([MAGIC + end_record(0)])) == []


@pytest.mark.parametrize("size", [1, 7, len(SNAPSHOT)], ids=["1-byte", "7-bytes", "whole"])
@pytest.mark.parametrize("cut", [0, 5, 8, 10, 8 + 1 + 16 + 3, len(SNAPSHOT) - 1])
def test_a_truncated_snapshot_fails_naming_where_it_ends(size: int, cut: int) -> None:
    message = failure(chunked(SNAPSHOT[:cut], size))

    assert message == f"the snapshot ends early, at byte {cut}: truncated"


def test_a_snapshot_without_its_end_record_is_truncated() -> None:
    without_end = SNAPSHOT[: -len(end_record(0))]

    assert failure(chunked(without_end, 7)) == (
        f"the snapshot ends early, at byte {len(without_end)}: truncated"
    )


@pytest.mark.parametrize("header", [b"FOREDIS\x02", b"PGDMP\x01\x0e\x00", b"REDIS001", b"\x00" * 8])
def test_a_wrong_header_is_refused(header: bytes) -> None:
    data = header + SNAPSHOT[len(MAGIC) :]

    assert failure(chunked(data, 7)) == ("not a feedback-ops logical Redis snapshot (wrong header)")


@pytest.mark.parametrize("claimed", [0, len(RECORDS) - 1, len(RECORDS) + 1, 2**64 - 1])
def test_an_end_record_that_disagrees_is_refused(claimed: int) -> None:
    data = encode(RECORDS, keys=claimed)

    assert failure(chunked(data, 7)) == (
        f"the snapshot says it holds {claimed} keys but has {len(RECORDS)}"
    )


@pytest.mark.parametrize("extra", [b"\x00", b"E" + bytes(8), SNAPSHOT])
@pytest.mark.parametrize("size", [1, 7, 1_000_000], ids=["1-byte", "7-bytes", "whole"])
def test_bytes_after_the_end_record_are_refused(extra: bytes, size: int) -> None:
    data = SNAPSHOT + extra

    assert failure(chunked(data, size)) == (
        f"the snapshot has bytes after its end, at byte {len(SNAPSHOT)}"
    )


def test_the_records_before_damage_are_yielded_first() -> None:
    """A reader sees the good keys, then the error: nothing is silently skipped."""
    reader = read_records([SNAPSHOT + b"!"])
    seen = []
    with pytest.raises(OpsError, match="bytes after its end"):
        for record in reader:
            seen.append(record)

    assert seen == RECORDS


@pytest.mark.parametrize("tag", [b"X", b"s", b"\x00", b"\xff"])
def test_an_unknown_tag_is_refused_at_its_offset(tag: bytes) -> None:
    first = key_record(b"k", NO_EXPIRY, b"v")
    data = MAGIC + first + tag + end_record(1)

    assert failure(chunked(data, 7)) == (
        f"the snapshot is corrupt at byte {len(MAGIC) + len(first)}: tag {tag!r}"
    )
