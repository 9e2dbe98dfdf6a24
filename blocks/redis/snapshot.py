"""Stream a Redis snapshot into an object store, hashing on the way, with key counts.

Two methods, as the Redis block chooses:

- `rdb`: `redis-cli --rdb -` takes the RDB file over the replication stream (the
  server forks; nothing blocks). The bytes go to the store and, at the same time,
  through `redis-check-rdb`, so a snapshot that does not check out is never called
  complete and no second copy is kept on disk.
- `logical`: SCAN with DUMP and PEXPIRETIME (PTTL before Redis 7), batch by batch,
  for every database that has keys (see `blocks/redis/records.py`). Works where SYNC is
  refused (Redis Cloud, ElastiCache). Memory is bounded by one SCAN batch.

Neither uses KEYS or SAVE.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, cast

import redis

from blocks.redis import RedisServer
from blocks.redis.client import (
    connected,
    find_redis_tool,
    keyspace,
    pack,
    redis_errors,
    roundtrip,
    server_facts,
)
from blocks.redis.records import MAGIC, NO_EXPIRY, end_record, key_record, select_record
from blocks.storage.stores import CHUNK_SIZE, ChunkStream, HashingReader, ObjectStore
from blocks.tools import ends_with_parent, tool_version
from feedback_ops.errors import OpsError, TransientError

# After the stream ends, redis-cli and redis-check-rdb only have their exit left to do.
EXIT_WAIT_SECONDS = 60

SCAN_BATCH = 1000
RDB_FORMAT = "redis-rdb"


@dataclass(frozen=True)
class SnapshotResult:
    """What a finished snapshot stored and what is inside it."""

    size: int
    sha256: str
    databases: dict[str, dict[str, int]]
    """Per database number: `keys` and `expires` (keys with a TTL)."""
    used_memory: int
    redis_version: str
    method: str
    started_at: datetime
    finished_at: datetime
    tools: dict[str, str] = field(default_factory=dict)

    @property
    def keys(self) -> int:
        """Keys in every database together."""
        return sum(db["keys"] for db in self.databases.values())


# --- logical -----------------------------------------------------------------------


def logical_snapshot(
    server: RedisServer,
    store: ObjectStore,
    key: str,
    on_progress: Callable[[int], None] | None = None,
) -> SnapshotResult:
    """Write a logical snapshot of every database of `server` to `store` under `key`."""
    version, used_memory = server_facts(server)
    started = datetime.now(UTC)
    databases: dict[str, dict[str, int]] = {}
    reader = HashingReader(ChunkStream(logical_chunks(server, databases)), on_progress=on_progress)
    store.upload_stream(key, reader)
    digest = reader.digest
    return SnapshotResult(
        size=digest.size,
        sha256=digest.sha256,
        databases=databases,
        used_memory=used_memory,
        redis_version=version,
        method="logical",
        started_at=started,
        finished_at=datetime.now(UTC),
        tools={"redis-py": redis.__version__, "server": version},
    )


def logical_chunks(
    server: RedisServer, databases: dict[str, dict[str, int]] | None = None
) -> Iterator[bytes]:
    """The snapshot file, one SCAN batch per chunk; fills `databases` as it goes."""
    yield MAGIC
    total = 0
    with connected(server) as first, redis_errors(server):
        numbers = list(keyspace(first))
        version = str(first.info("server")["redis_version"])
    # PEXPIRETIME (Redis 7) gives the exact expiry the RDB would carry; older servers
    # only say the time left, which is turned into a time here.
    absolute = int(version.split(".")[0]) >= 7
    for db in numbers:
        counts = {"keys": 0, "expires": 0}
        with connected(server, db) as client, redis_errors(server):
            yield select_record(db)
            for batch in _scan_batches(client):
                chunk = _dump_batch(client, batch, counts, absolute)
                if chunk:
                    yield chunk
        if databases is not None:
            databases[str(db)] = counts
        total += counts["keys"]
    yield end_record(total)


def _scan_batches(client: redis.Redis) -> Iterator[list[bytes]]:
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor, count=SCAN_BATCH)
        if keys:
            # SCAN may repeat a key within one reply while the table shrinks.
            yield list(dict.fromkeys(cast(list[bytes], keys)))
        if cursor == 0:
            return


def _dump_batch(
    client: redis.Redis, keys: list[bytes], counts: dict[str, int], absolute: bool
) -> bytes:
    expiry = b"PEXPIRETIME" if absolute else b"PTTL"
    packed = b"".join(pack(b"DUMP", name) + pack(expiry, name) for name in keys)
    now_ms = 0 if absolute else time.time_ns() // 1_000_000
    replies = roundtrip(client, packed, 2 * len(keys))
    out = bytearray()
    for name, payload, ttl in zip(keys, replies[::2], replies[1::2], strict=True):
        if payload is None or ttl == -2:
            continue  # deleted or expired between SCAN and DUMP
        if ttl >= 0:
            expire = now_ms + ttl
            counts["expires"] += 1
        else:
            expire = NO_EXPIRY
        out += key_record(name, expire, payload)
        counts["keys"] += 1
    return bytes(out)


# --- rdb ---------------------------------------------------------------------------


def rdb_snapshot(
    server: RedisServer,
    store: ObjectStore,
    key: str,
    on_progress: Callable[[int], None] | None = None,
) -> SnapshotResult:
    """Stream the server's RDB file (`redis-cli --rdb`) to `store`, checked on the way by
    `redis-check-rdb`, and count its keys per database from the file itself."""
    cli = find_redis_tool("redis-cli")
    checker = find_redis_tool("redis-check-rdb")
    version, used_memory = server_facts(server)
    started = datetime.now(UTC)
    env = {"PATH": "/usr/bin:/bin", **server.cli_env()}
    with (
        tempfile.TemporaryFile() as cli_err,
        tempfile.TemporaryFile() as check_out,
    ):
        proc = subprocess.Popen(
            [cli, *server.cli_args(), "--rdb", "-"],
            stdout=subprocess.PIPE,
            stderr=cli_err,
            env=env,
            preexec_fn=ends_with_parent,  # noqa: PLW1509 - prebuilt, async-signal-safe
        )
        check = subprocess.Popen(
            [checker, "/dev/stdin"],
            stdin=subprocess.PIPE,
            stdout=check_out,
            stderr=check_out,
            preexec_fn=ends_with_parent,  # noqa: PLW1509 - prebuilt, async-signal-safe
        )
        assert proc.stdout is not None and check.stdin is not None

        def finish() -> None:
            _finish_rdb(proc, check, cli_err, check_out, server)

        def eof_marked() -> bool:
            cli_err.seek(0)
            return b"until EOF marker" in cli_err.read()

        chunks = _tee(proc.stdout, check.stdin, eof_marked)
        reader = HashingReader(ChunkStream(chunks), on_eof=finish, on_progress=on_progress)
        try:
            store.upload_stream(key, reader)
        finally:
            for child in (proc, check):
                if child.poll() is None:
                    child.kill()
                    child.wait()
        check_out.seek(0)
        report = check_out.read().decode(errors="replace")
    digest = reader.digest
    databases = _rdb_databases(report, store, key)
    return SnapshotResult(
        size=digest.size,
        sha256=digest.sha256,
        databases=databases,
        used_memory=used_memory,
        redis_version=version,
        method="rdb",
        started_at=started,
        finished_at=datetime.now(UTC),
        tools={"redis-cli": tool_version(cli), "server": version},
    )


EOF_MARK_SIZE = 40


def _tee(source: IO[bytes], checker: IO[bytes], eof_marked: Callable[[], bool]) -> Iterator[bytes]:
    """The RDB bytes, each chunk also written to `redis-check-rdb`.

    A diskless master ends the stream with a 40-byte EOF mark. `redis-cli --rdb FILE`
    cuts it off the file afterwards, which it cannot do on a pipe, so the last 40 bytes
    are held back here and dropped when redis-cli says the transfer was EOF-marked.
    """
    tail = b""
    while chunk := source.read(CHUNK_SIZE):
        # A checker that stopped early says why in its exit status, read at the end.
        with suppress(BrokenPipeError):
            checker.write(chunk)
        data = tail + chunk
        tail = data[-EOF_MARK_SIZE:]
        if len(data) > EOF_MARK_SIZE:
            yield data[:-EOF_MARK_SIZE]
    with suppress(BrokenPipeError):
        checker.close()
    if tail and not eof_marked():
        yield tail


def _finish_rdb(
    proc: subprocess.Popen[bytes],
    check: subprocess.Popen[bytes],
    cli_err: IO[bytes],
    check_out: IO[bytes],
    server: RedisServer,
) -> None:
    """At the stream's end: both tools must have succeeded, or the upload is aborted."""
    where = f"Redis at {server.display_name}"
    if _exit_code(proc, "redis-cli") != 0:
        cli_err.seek(0)
        text = " ".join(cli_err.read().decode(errors="replace").split())
        lower = text.lower()
        if "refused" in lower and "connect" in lower:
            raise OpsError(f"{where} is unreachable: connection refused")
        if "auth" in lower or "wrongpass" in lower or "noauth" in lower:
            raise OpsError(f"{where} rejected the login: wrong or missing password")
        if "sync" in lower or "unknown command" in lower or "noperm" in lower:
            raise OpsError(
                f"{where} refused the replication stream (redis-cli --rdb): {text[-200:]}; "
                "managed Redis needs snapshot_method 'logical'"
            )
        raise TransientError(f"redis-cli --rdb from {where} failed: {text[-300:]}")
    if _exit_code(check, "redis-check-rdb") != 0:
        check_out.seek(0)
        lines = check_out.read().decode(errors="replace").splitlines()
        reason = next((line for line in lines if "RDB ERROR" not in line and "---" in line), "")
        tail = " ".join(line.strip() for line in lines[-3:])
        raise OpsError(f"redis-check-rdb rejected the RDB from {where}: {reason or tail}")


def _exit_code(proc: subprocess.Popen[bytes], name: str) -> int:
    try:
        return proc.wait(timeout=EXIT_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        raise OpsError(
            f"{name} did not exit within {EXIT_WAIT_SECONDS} s after the stream ended"
        ) from None


_SELECT_LINE = re.compile(r"^\[offset (\d+)\] Selecting DB ID (\d+)$", re.MULTILINE)
_INFO_LINE = re.compile(r"^\[info\] (\d+) (keys read|expires)$", re.MULTILINE)


def _rdb_databases(report: str, store: ObjectStore, key: str) -> dict[str, dict[str, int]]:
    """Keys and expires per database, from the RESIZEDB record after each SELECTDB.

    redis-check-rdb prints the offset just past each SELECTDB; the RDB file carries
    the database's key and expire counts right there, as Redis wrote them at the fork.

    Raises:
        OpsError: the counts are not where Redis puts them, or do not add up to the
            keys redis-check-rdb read.
    """
    databases = {}
    for offset, db in _SELECT_LINE.findall(report):
        head = store.read_range(key, int(offset), 19)
        if not head or head[0] != 0xFB:
            raise OpsError(f"the RDB has no key counts after database {db} (not RDB v7+?)")
        keys, pos = _rdb_length(head, 1)
        expires, _ = _rdb_length(head, pos)
        databases[db] = {"keys": keys, "expires": expires}
    totals = {name: int(n) for n, name in _INFO_LINE.findall(report)}
    if sum(d["keys"] for d in databases.values()) != totals.get("keys read"):
        raise OpsError(
            f"the RDB's key counts ({databases}) do not add up to the "
            f"{totals.get('keys read')} keys redis-check-rdb read"
        )
    return databases


def _rdb_length(data: bytes, pos: int) -> tuple[int, int]:
    """One RDB length encoding at `pos`: (value, position after it)."""
    first = data[pos]
    kind = first >> 6
    if kind == 0:
        return first & 0x3F, pos + 1
    if kind == 1:
        return ((first & 0x3F) << 8) | data[pos + 1], pos + 2
    if first == 0x80:
        return int.from_bytes(data[pos + 1 : pos + 5], "big"), pos + 5
    if first == 0x81:
        return int.from_bytes(data[pos + 1 : pos + 9], "big"), pos + 9
    raise OpsError(f"unexpected RDB length encoding {first:#x}")
