"""Stream `pg_dump` into an object store, hashing on the way, with exact row counts.

The dump and the row counts come from one exported snapshot, so the counts in a
manifest are exactly the rows inside the dump.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import psycopg
from psycopg import sql

from blocks.postgres import PostgresDatabase
from blocks.postgres.client import (
    child_env,
    connect,
    count_rows,
    explain_postgres_error,
    find_pg_tool,
    list_tables,
    server_major,
    size_on_disk,
)
from blocks.storage.stores import HashingReader, ObjectStore
from blocks.tools import SilenceWatch, ends_with_parent, tool_version
from feedback_ops.errors import OpsError, TimedOut

PG_DUMP_APPLICATION_NAME = "feedback-ops-pg_dump"
EXIT_WAIT_SECONDS = 60
# pg_dump writes steadily once it has its locks: ten minutes without a byte is a hang.
SILENCE_SECONDS = 600


@dataclass(frozen=True)
class DumpResult:
    """What a finished dump produced: the stored object and what is inside it."""

    key: str
    size: int
    sha256: str
    row_counts: dict[str, int]
    server_version: str
    pg_dump_version: str
    database_bytes: int
    """The database's size on disk when dumped: what a restore of it grows to."""
    started_at: datetime
    finished_at: datetime
    tool: str = "pg_dump --format=custom"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        """Wall-clock duration of the dump."""
        return (self.finished_at - self.started_at).total_seconds()


def dump_to_store(
    db: PostgresDatabase,
    store: ObjectStore,
    key: str,
    *,
    lock_wait_timeout_seconds: int = 300,
    with_row_counts: bool = True,
    on_progress: Callable[[int], None] | None = None,
    silence_seconds: float = SILENCE_SECONDS,
) -> DumpResult:
    """Run `pg_dump --format=custom` and stream its output into `store` under `key`.

    The exporting transaction stays open until the dump ends, and counts the rows of
    every table in the same snapshot pg_dump reads, on a second thread while the dump
    streams; `on_progress` is told the bytes streamed so far. If pg_dump fails, the
    upload is aborted before anything appears under `key`.

    Raises:
        TimedOut: pg_dump sent nothing for `silence_seconds` (before its first byte:
            that plus the lock wait) and was killed.
    """
    started = datetime.now(UTC)
    conn = connect(db, autocommit=True)
    counter: _Counter | None = None
    proc: subprocess.Popen[bytes] | None = None
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute(
            sql.SQL("SET LOCAL lock_timeout = {}").format(
                sql.Literal(f"{lock_wait_timeout_seconds}s")
            )
        )
        # The counts run beside pg_dump: one core, not a parallel scan that would take
        # the CPU pg_dump needs to compress.
        conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        snapshot_row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert snapshot_row is not None
        major = server_major(conn)
        server_version = conn.info.parameter_status("server_version") or str(major)
        tables = list_tables(conn)
        database_bytes = size_on_disk(conn)
        pg_dump = find_pg_tool("pg_dump", major)
        with tempfile.TemporaryFile() as stderr:
            proc = subprocess.Popen(
                [
                    pg_dump,
                    "--format=custom",
                    "--no-password",
                    f"--snapshot={snapshot_row[0]}",
                    f"--lock-wait-timeout={lock_wait_timeout_seconds * 1000}",
                ],
                stdout=subprocess.PIPE,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                preexec_fn=ends_with_parent,  # noqa: PLW1509 - prebuilt, async-signal-safe
                # Named apart from the flow's own sessions: a DBA sees which backend dumps.
                env=child_env(db, PG_DUMP_APPLICATION_NAME),
            )
            if with_row_counts:
                counter = _Counter(conn, tables)
                counter.start()
            assert proc.stdout is not None
            silence = SilenceWatch(
                proc, "pg_dump", silence_seconds, silence_seconds + lock_wait_timeout_seconds
            )

            def heard(size: int) -> None:
                silence.heard()
                if on_progress is not None:
                    on_progress(size)

            reader = HashingReader(
                proc.stdout,
                on_eof=lambda: _check_exit(proc, stderr, db, silence),
                on_progress=heard,
            )
            with silence:
                store.upload_stream(key, reader)
        counts = counter.result() if counter is not None else {}
        digest = reader.digest
    except BaseException:
        if proc is not None and proc.poll() is None:
            proc.kill()
        if counter is not None:
            counter.abandon()
        raise
    finally:
        if proc is not None:
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        conn.close()
    return DumpResult(
        key=key,
        size=digest.size,
        sha256=digest.sha256,
        row_counts=counts,
        server_version=server_version,
        pg_dump_version=tool_version(pg_dump),
        database_bytes=database_bytes,
        started_at=started,
        finished_at=datetime.now(UTC),
    )


def _check_exit(
    proc: subprocess.Popen[bytes], stderr: IO[bytes], db: PostgresDatabase, silence: SilenceWatch
) -> None:
    try:
        # The output has ended: pg_dump only has its exit left to do.
        code = proc.wait(timeout=EXIT_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        raise OpsError(
            f"pg_dump did not exit within {EXIT_WAIT_SECONDS} s after its output ended"
        ) from None
    if silence.reason is not None:
        raise TimedOut(silence.reason)
    if code != 0:
        stderr.seek(0)
        message = stderr.read().decode("utf-8", "replace") or f"pg_dump exited with {code}"
        raise explain_postgres_error(message, db)


class _Counter(threading.Thread):
    """Counts rows in the exporting transaction while the main thread pumps the dump."""

    def __init__(self, conn: psycopg.Connection[Any], tables: list[tuple[str, str]]) -> None:
        super().__init__(name="row-counter", daemon=True)
        self._conn = conn
        self._tables = tables
        self._counts: dict[str, int] = {}
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self._counts = count_rows(self._conn, self._tables)
        except BaseException as exc:  # handed to the main thread in result()
            self._error = exc

    def result(self) -> dict[str, int]:
        """The counts, once done; a failure re-raised as a one-line reason."""
        self.join()
        if isinstance(self._error, psycopg.Error):
            raise OpsError(f"counting rows for the manifest failed: {self._error}")
        if self._error is not None:
            raise self._error
        return self._counts

    def abandon(self) -> None:
        """Stop a count still running, so a failed dump does not wait for it."""
        if self.is_alive():
            self._conn.cancel_safe()
            self.join(timeout=30)
