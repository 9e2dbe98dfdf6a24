"""Load a Redis snapshot into a target Redis, and count what arrived.

- A logical snapshot is streamed from storage and replayed with
  `RESTORE key ttl payload REPLACE ABSTTL`, pipelined in bounded batches. Keys whose
  TTL ran out since the snapshot are skipped and counted.
- An RDB snapshot goes into a self-hosted server the runbook's way (stop, copy the
  file into the data directory, start), or, for any other target, is loaded by a
  temporary `redis-server` on a Unix socket of its own and copied into the target
  with the same DUMP/RESTORE stream as a logical snapshot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from blocks.redis import RedisServer
from blocks.redis.client import client_for, connected, keyspace, pack, redis_errors, roundtrip
from blocks.redis.records import NO_EXPIRY, read_records
from blocks.redis.snapshot import logical_chunks
from blocks.tools import ends_with_parent, installed
from feedback_ops.errors import OpsError

_REPLACE = (b"REPLACE", b"ABSTTL")

RESTORE_BATCH_KEYS = 1000
RESTORE_BATCH_BYTES = 8 * 1024 * 1024
START_TIMEOUT_SECONDS = 300


@dataclass
class Applied:
    """What a restore wrote, per database number."""

    restored: dict[int, int] = field(default_factory=dict)
    expired: dict[int, int] = field(default_factory=dict)
    """Keys skipped because their TTL ran out after the snapshot was taken."""


def target_keys(server: RedisServer) -> dict[int, int]:
    """Keys per database in the target now."""
    with connected(server) as client, redis_errors(server):
        return {db: stats["keys"] for db, stats in keyspace(client).items()}


def flush_all(server: RedisServer) -> None:
    """Empty every database of the target (FLUSHALL, the overwrite the operator asked for)."""
    with connected(server) as client, redis_errors(server):
        client.flushall()


def restore_stream(
    target: RedisServer,
    chunks: Iterable[bytes],
    on_progress: Callable[[int], None] | None = None,
) -> Applied:
    """Replay a logical snapshot's bytes into `target`, batch by batch; `on_progress`
    is told the keys written or skipped as expired so far, after every batch."""
    applied = Applied()
    done = 0
    clients: dict[int, redis.Redis] = {}
    try:
        with redis_errors(target):
            for db, batch in _batches(read_records(chunks)):
                client = clients.get(db) or clients.setdefault(db, client_for(target, db))
                now_ms = time.time_ns() // 1_000_000
                commands = []
                for record in batch:
                    if record.expire_at_ms != NO_EXPIRY and record.expire_at_ms <= now_ms:
                        applied.expired[db] = applied.expired.get(db, 0) + 1
                        continue
                    ttl = 0 if record.expire_at_ms == NO_EXPIRY else record.expire_at_ms
                    commands.append(
                        pack(b"RESTORE", record.key, b"%d" % ttl, record.payload, *_REPLACE)
                    )
                sent = len(commands)
                if sent:
                    roundtrip(client, b"".join(commands), sent)
                applied.restored[db] = applied.restored.get(db, 0) + sent
                done += len(batch)
                if on_progress is not None:
                    on_progress(done)
    finally:
        for client in clients.values():
            client.close()
    return applied


def _batches(records: Iterable[Any]) -> Iterator[tuple[int, list[Any]]]:
    """Records grouped per database, at most RESTORE_BATCH_KEYS or _BYTES at a time."""
    batch: list[Any] = []
    db = None
    size = 0
    for record in records:
        if batch and (
            record.db != db or len(batch) >= RESTORE_BATCH_KEYS or size >= RESTORE_BATCH_BYTES
        ):
            yield db, batch  # type: ignore[misc]
            batch, size = [], 0
        db = record.db
        batch.append(record)
        size += len(record.payload) + len(record.key)
    if batch:
        yield db, batch  # type: ignore[misc]


@contextmanager
def temporary_server(rdb_file: Path) -> Iterator[RedisServer]:
    """A `redis-server` that loaded `rdb_file`, on a Unix socket in a private folder;
    stopped and removed on exit. It persists nothing and listens on no TCP port."""
    binary = installed("redis-server", "redis-server")
    with tempfile.TemporaryDirectory(prefix="fo-redis-") as tmp:
        os.chmod(tmp, 0o700)
        # The server loads from its own folder: a hard link when possible, not a copy.
        if os.stat(rdb_file).st_dev == os.stat(tmp).st_dev:
            os.link(rdb_file, Path(tmp, "dump.rdb"))
        else:
            shutil.copyfile(rdb_file, Path(tmp, "dump.rdb"))
        sock = str(Path(tmp, "redis.sock"))
        log = Path(tmp, "redis.log")
        proc = subprocess.Popen(
            [
                binary,
                "--port", "0",
                "--unixsocket", sock,
                "--unixsocketperm", "700",
                "--dir", tmp,
                "--dbfilename", "dump.rdb",
                "--save", "",
                "--appendonly", "no",
                "--logfile", str(log),
                "--databases", "16",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=ends_with_parent,  # noqa: PLW1509 - prebuilt, async-signal-safe
        )  # fmt: skip
        server = RedisServer(unix_socket_path=sock, socket_timeout=60)
        try:
            wait_until_loaded(server, proc, log)
            yield server
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_until_loaded(
    server: RedisServer, proc: subprocess.Popen[bytes] | None = None, log: Path | None = None
) -> None:
    """Wait until the server answers and has finished loading its data.

    Raises:
        OpsError: it exited, or did not finish loading within START_TIMEOUT_SECONDS.
    """
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    with connected(server) as client:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                tail = log.read_text(errors="replace").splitlines()[-3:] if log else []
                raise OpsError(f"redis-server could not load the snapshot: {' '.join(tail)}")
            try:
                if not int(client.info("persistence").get("loading", 0)):
                    return
            except (redis.ConnectionError, redis.BusyLoadingError):
                pass
            time.sleep(0.1)
    raise OpsError(
        f"Redis at {server.display_name} did not finish loading in {START_TIMEOUT_SECONDS} s"
    )


def copy_server(
    source: RedisServer,
    target: RedisServer,
    on_progress: Callable[[int], None] | None = None,
) -> Applied:
    """Copy every key of `source` into `target` with DUMP and RESTORE, streaming."""
    return restore_stream(target, logical_chunks(source), on_progress)


def replace_self_hosted(target: RedisServer, rdb_file: Path) -> None:
    """The runbook's Redis recovery: stop the server, put the snapshot in its data
    directory as its RDB file, start it, and wait until it has loaded.

    Raises:
        OpsError: the server persists with AOF (it would load that, not the RDB), or a
            command failed; the message names which.
    """
    assert target.data_dir
    _refuse_aof(target)
    destination = Path(target.data_dir, target.rdb_filename)
    try:
        _run(target.stop_command, "stop")
    except OpsError:
        # A stop command may fail because the server is down already (a crash is when
        # this restore is needed): only a server that still answers is a real failure.
        if _answers(target):
            raise
    staged = destination.with_name(f".{destination.name}.restoring")
    try:
        shutil.copyfile(rdb_file, staged)
        with open(staged, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(staged, destination)
    except OSError as exc:
        staged.unlink(missing_ok=True)
        raise OpsError(f"could not copy the snapshot to {destination}: {exc.strerror}") from None
    finally:
        # The server goes back up whatever happened: a cache that is down is worse.
        _run(target.start_command, "start")
    wait_until_loaded(target)


def _answers(server: RedisServer) -> bool:
    with connected(server) as client:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False


def _refuse_aof(target: RedisServer) -> None:
    with connected(target) as client:
        try:
            setting = client.config_get("appendonly").get("appendonly")
        except redis.ResponseError:
            setting = None  # CONFIG renamed or refused: nothing to learn here
        except redis.ConnectionError:
            setting = None  # already down: it is about to be started from the file anyway
    if setting == "yes":
        raise OpsError(
            f"Redis at {target.display_name} persists with AOF (appendonly yes): it would "
            "load its AOF, not the RDB; restore through a temporary server instead "
            "(clear data_dir in the block)"
        )


def _run(argv: list[str], what: str) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OpsError(f"the Redis {what} command {argv[0]!r} failed: {exc}") from None
    if done.returncode != 0:
        tail = " ".join((done.stderr or done.stdout).split())[-200:]
        raise OpsError(
            f"the Redis {what} command {argv[0]!r} exited with {done.returncode}: {tail}"
        )


def compare_counts(
    manifest_dbs: dict[str, dict[str, int]], applied: Applied | None, now: dict[int, int]
) -> list[str]:
    """Differences between the snapshot's key counts and the target's, one per line.

    With `applied` (a DUMP/RESTORE replay) the expected count is exact: the manifest's
    minus the keys skipped as expired. Without it (a server that loaded the RDB
    itself and dropped what expired) a database may hold fewer keys than the manifest,
    by at most its keys with a TTL.
    """
    problems = []
    numbers = {int(db) for db in manifest_dbs} | set(now)
    for db in sorted(numbers):
        want = manifest_dbs.get(str(db), {"keys": 0, "expires": 0})
        have = now.get(db, 0)
        if applied is not None:
            expected = want["keys"] - applied.expired.get(db, 0)
            if have != expected:
                problems.append(f"db{db}: {have} keys, expected {expected}")
        elif not want["keys"] - want["expires"] <= have <= want["keys"]:
            problems.append(
                f"db{db}: {have} keys, expected {want['keys']} "
                f"(at least {want['keys'] - want['expires']})"
            )
    return problems
