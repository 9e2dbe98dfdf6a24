"""Key counts per database, read from a real RDB file at the offsets redis-check-rdb prints.

A real redis-server writes the keys; the real `redis-cli --rdb` fetches the file over the
replication stream, as `redis-snapshot` does; the real `redis-check-rdb` reports it.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.redis_server import redis_server

from blocks.redis.snapshot import _rdb_databases, _rdb_length
from blocks.storage.stores import LocalStore, parse_location
from feedback_ops.errors import OpsError

KEY = "redis/2027/03/snapshot.rdb"
# db -> (keys, of which with a TTL). 20000 needs the 32-bit length, 300 and 70 the
# 14-bit one, 5 and 2 and 0 the 6-bit one.
WRITTEN = {0: (20_000, 300), 2: (5, 2), 9: (70, 0)}
EXPECTED = {
    "0": {"keys": 20_000, "expires": 300},
    "2": {"keys": 5, "expires": 2},
    "9": {"keys": 70, "expires": 0},
}


@dataclass(frozen=True)
class Rdb:
    store: LocalStore
    path: Path
    report: str


@pytest.fixture(scope="module")
def rdb(tmp_path_factory: pytest.TempPathFactory) -> Rdb:
    tmp_path = tmp_path_factory.mktemp("rdb")
    path = tmp_path / KEY
    path.parent.mkdir(parents=True)
    with redis_server() as server:
        for db, (keys, with_ttl) in WRITTEN.items():
            client = server.client(db)
            pipe = client.pipeline(transaction=False)
            for n in range(keys):
                name = f"k:{db}:{n:05d}"
                if n % 4 == 1:
                    pipe.hset(name, mapping={"a": n, "b": "fält"})
                elif n % 4 == 2:
                    pipe.rpush(name, n, n + 1)
                else:
                    pipe.set(name, n)
                if n < with_ttl:
                    pipe.expire(name, 3600 + n)
            pipe.execute()
            client.close()
        fetched = subprocess.run(
            ["redis-cli", "-p", str(server.port), "--rdb", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert fetched.returncode == 0, fetched.stderr
    checked = subprocess.run(
        ["redis-check-rdb", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    store = LocalStore(parse_location(f"file://{tmp_path}"))
    return Rdb(store, path, checked.stdout)


# --- counts from a real RDB -------------------------------------------------------------


def test_counts_per_database_from_a_real_rdb(rdb: Rdb) -> None:
    assert _rdb_databases(rdb.report, rdb.store, KEY) == EXPECTED


def test_the_real_rdb_uses_every_length_encoding_the_counts_need(rdb: Rdb) -> None:
    """The file itself: 0x80 (32-bit) for 20000 keys, 0x4... (14-bit), plain 6-bit."""
    offsets = {
        db: int(offset)
        for offset, db in re.findall(r"\[offset (\d+)\] Selecting DB ID (\d+)", rdb.report)
    }
    data = rdb.path.read_bytes()

    assert sorted(offsets) == ["0", "2", "9"]
    assert data[offsets["0"] : offsets["0"] + 8] == bytes.fromhex("fb80") + (20_000).to_bytes(
        4, "big"
    ) + bytes.fromhex("412c")  # 300 in 14 bits
    assert data[offsets["2"] : offsets["2"] + 3] == bytes.fromhex("fb0502")
    assert data[offsets["9"] : offsets["9"] + 4] == bytes.fromhex("fb404600")
    assert re.search(r"^\[info\] 20075 keys read$", rdb.report, re.MULTILINE)
    assert re.search(r"^\[info\] 302 expires$", rdb.report, re.MULTILINE)


def test_counts_that_do_not_add_up_are_refused(rdb: Rdb) -> None:
    report = rdb.report.replace("[info] 20075 keys read", "[info] 20076 keys read")
    assert report != rdb.report

    with pytest.raises(OpsError) as caught:
        _rdb_databases(report, rdb.store, KEY)

    assert str(caught.value) == (
        f"the RDB's key counts ({EXPECTED}) do not add up to the 20076 keys redis-check-rdb read"
    )


def test_a_report_without_a_keys_read_line_is_refused(rdb: Rdb) -> None:
    report = re.sub(r"^\[info\] \d+ keys read$", "", rdb.report, flags=re.MULTILINE)

    with pytest.raises(OpsError) as caught:
        _rdb_databases(report, rdb.store, KEY)

    assert str(caught.value) == (
        f"the RDB's key counts ({EXPECTED}) do not add up to the None keys redis-check-rdb read"
    )


def test_a_select_offset_without_resizedb_is_refused(rdb: Rdb) -> None:
    # One byte early: the report points at the database number, not at RESIZEDB.
    moved = re.sub(
        r"^\[offset (\d+)\] Selecting DB ID 2$",
        lambda m: f"[offset {int(m.group(1)) - 1}] Selecting DB ID 2",
        rdb.report,
        flags=re.MULTILINE,
    )
    assert moved != rdb.report

    with pytest.raises(OpsError) as caught:
        _rdb_databases(moved, rdb.store, KEY)

    assert str(caught.value) == "the RDB has no key counts after database 2 (not RDB v7+?)"


# --- hand-built counts --------------------------------------------------------------------


def test_counts_from_hand_built_bytes(tmp_path: Path) -> None:
    store = LocalStore(parse_location(f"file://{tmp_path}"))
    store.put_bytes("x.rdb", b"junk\xfb\x05\x02more\xfb\x40\x46\x00\xff")
    report = (
        "[offset 4] Selecting DB ID 0\n"
        "[offset 11] Selecting DB ID 3\n"
        "[info] 75 keys read\n"
        "[info] 2 expires\n"
    )

    assert _rdb_databases(report, store, "x.rdb") == {
        "0": {"keys": 5, "expires": 2},
        "3": {"keys": 70, "expires": 0},
    }
    with pytest.raises(OpsError, match=r"do not add up to the 74 keys"):
        _rdb_databases(report.replace("75 keys", "74 keys"), store, "x.rdb")


def test_an_empty_rdb_has_no_databases(tmp_path: Path) -> None:
    store = LocalStore(parse_location(f"file://{tmp_path}"))
    store.put_bytes("empty.rdb", b"REDIS0010\xff" + bytes(8))

    assert _rdb_databases("[info] 0 keys read\n[info] 0 expires\n", store, "empty.rdb") == {}


# --- the RDB length encoding --------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "value"),
    [
        (bytes([0x00]), 0),
        (bytes([0x05]), 5),
        (bytes([0x3F]), 63),
        (bytes([0x40, 0x40]), 64),
        (bytes([0x41, 0x2C]), 300),
        (bytes([0x7F, 0xFF]), 16_383),
        (b"\x80" + (16_384).to_bytes(4, "big"), 16_384),
        (b"\x80" + (20_000).to_bytes(4, "big"), 20_000),
        (b"\x80" + (2**32 - 1).to_bytes(4, "big"), 2**32 - 1),
        (b"\x81" + (2**32).to_bytes(8, "big"), 2**32),
        (b"\x81" + (2**64 - 1).to_bytes(8, "big"), 2**64 - 1),
    ],
    ids=lambda v: v.hex() if isinstance(v, bytes) else str(v),
)
@pytest.mark.parametrize("pos", [0, 3])
def test_rdb_length_reads_each_encoding(encoded: bytes, value: int, pos: int) -> None:
    data = b"\xfb" * pos + encoded + b"\x07tail"

    assert _rdb_length(data, pos) == (value, pos + len(encoded))


def test_rdb_length_reads_two_in_a_row() -> None:
    data = b"\xfb\x80\x00\x00\x4e\x20\x41\x2c"

    keys, pos = _rdb_length(data, 1)
    expires, end = _rdb_length(data, pos)

    assert (keys, expires, end) == (20_000, 300, len(data))


@pytest.mark.parametrize("first", [0xC0, 0xC1, 0xC3, 0xFF, 0x82, 0xBF])
def test_rdb_length_refuses_other_encodings(first: int) -> None:
    with pytest.raises(OpsError) as caught:
        _rdb_length(bytes([first]) + bytes(8), 0)

    assert str(caught.value) == f"unexpected RDB length encoding {first:#x}"
