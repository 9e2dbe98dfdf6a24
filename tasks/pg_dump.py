"""Stream `pg_dump` into an object store, hashing on the way, with exact row counts.

Plain functions that take a database block and a store; `tasks/postgres.py` wraps
them as retriable tasks. The dump and the row counts come from one exported snapshot,
so the counts in a manifest are exactly the rows inside the dump.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import sql

from blocks.postgres import PostgresDatabase
from feedback_ops.errors import OpsError, TransientError
from tasks.object_store import HashingReader, ObjectStore

_TRANSIENT_MARKERS = (
    "server closed the connection unexpectedly",
    "connection reset",
    "terminating connection due to administrator command",
    "could not receive data from server",
    "ssl syscall error",
    "the database system is shutting down",
    "the database system is starting up",
    "too many connections",
    "remaining connection slots are reserved",
)


@dataclass(frozen=True)
class DumpResult:
    """What a finished dump produced: the stored object and what is inside it."""

    key: str
    size: int
    sha256: str
    row_counts: dict[str, int]
    server_version: str
    pg_dump_version: str
    started_at: datetime
    finished_at: datetime
    tool: str = "pg_dump --format=custom"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        """Wall-clock duration of the dump."""
        return (self.finished_at - self.started_at).total_seconds()


def explain_postgres_error(message: str, db: PostgresDatabase) -> OpsError:
    """A one-line, secret-free reason for a libpq or pg_dump failure."""
    text = " ".join(message.split())
    lower = text.lower()
    where = f"PostgreSQL at {db.host}:{db.port}/{db.database}"
    if "password authentication failed" in lower or "no password supplied" in lower:
        return OpsError(f"{where} rejected the login of user {db.username!r}: wrong password")
    if f'role "{db.username.lower()}" does not exist' in lower:
        return OpsError(f"{where} has no role {db.username!r}")
    if "does not exist" in lower and "database" in lower:
        return OpsError(f"{where}: database {db.database!r} does not exist")
    if "connection refused" in lower:
        return OpsError(f"{where} is unreachable: connection refused")
    if "could not translate host name" in lower or "name or service not known" in lower:
        return OpsError(f"{where} is unreachable: unknown host {db.host!r}")
    if "timeout expired" in lower:
        return OpsError(f"{where} is unreachable: connection timed out")
    if (
        "could not obtain lock" in lower
        or "lock timeout" in lower
        or ("statement timeout" in lower and "lock table" in lower)
    ):
        return OpsError(f"{where}: could not lock a table for the dump in time ({_tail(text)})")
    if "server version mismatch" in lower:
        return OpsError(f"{where}: pg_dump is older than the server ({_tail(text)})")
    if any(marker in lower for marker in _TRANSIENT_MARKERS):
        return TransientError(f"{where}: connection lost during the dump ({_tail(text)})")
    return OpsError(f"{where}: {_tail(text)}")


def _tail(text: str) -> str:
    """The last `error:`/`FATAL:` clause of a libpq message, without the long prefix."""
    for marker in ("FATAL:", "ERROR:", "error:"):
        if marker in text:
            text = text.rsplit(marker, 1)[1]
    # Drop anything shaped like a connection string in case a tool echoed one.
    text = re.sub(r"\w+://\S+", "<url>", text)
    return text.strip()[:300]


def connect(db: PostgresDatabase, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open a connection, turning login failures into one-line reasons."""
    try:
        return psycopg.connect(**db.connect_kwargs(), **kwargs)
    except psycopg.OperationalError as exc:
        raise explain_postgres_error(str(exc), db) from None


def server_major(conn: psycopg.Connection[Any]) -> int:
    """The server's major version, e.g. 15."""
    return conn.info.server_version // 10000


def find_pg_tool(name: str, major: int | None = None) -> str:
    """The path of a PostgreSQL client tool, preferring the server's major version.

    Debian installs each major version's tools under /usr/lib/postgresql/N/bin; a
    tool older than the server refuses to dump it.
    """
    if override := os.environ.get("PG_BIN_DIR"):
        return str(Path(override) / name)
    if major is not None:
        candidate = Path(f"/usr/lib/postgresql/{major}/bin/{name}")
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise OpsError(f"{name} is not installed (apt-get install postgresql-client)")
    return found


def list_tables(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """Every ordinary table outside the system schemas, as (schema, table)."""
    rows = conn.execute(
        """
        SELECT n.nspname, c.relname
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r'
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%'
        ORDER BY 1, 2
        """
    ).fetchall()
    return [(schema, table) for schema, table in rows]


def count_rows(conn: psycopg.Connection[Any], tables: list[tuple[str, str]]) -> dict[str, int]:
    """Exact row counts per table, as `schema.table`."""
    counts: dict[str, int] = {}
    for schema, table in tables:
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        row = conn.execute(query).fetchone()
        counts[f"{schema}.{table}"] = int(row[0]) if row else 0
    return counts


def dump_to_store(
    db: PostgresDatabase,
    store: ObjectStore,
    key: str,
    *,
    lock_wait_timeout_seconds: int = 300,
    with_row_counts: bool = True,
) -> DumpResult:
    """Run `pg_dump --format=custom` and stream its output into `store` under `key`.

    The exporting transaction stays open until the dump ends, and counts the rows of
    every table in the same snapshot pg_dump reads, on a second thread while the dump
    streams. If pg_dump fails, the upload is aborted before anything appears under
    `key`.
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
                env=_child_env(db),
            )
            if with_row_counts:
                counter = _Counter(conn, tables)
                counter.start()
            assert proc.stdout is not None
            reader = HashingReader(proc.stdout, on_eof=lambda: _check_exit(proc, stderr, db))
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
        pg_dump_version=pg_tool_version(pg_dump),
        started_at=started,
        finished_at=datetime.now(UTC),
    )


PG_DUMP_APPLICATION_NAME = "feedback-ops-pg_dump"


def _child_env(db: PostgresDatabase) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    # Named apart from the flow's own sessions, so a DBA sees which backend is the dump.
    return env | db.libpq_env() | {"PGAPPNAME": PG_DUMP_APPLICATION_NAME}


def _check_exit(proc: subprocess.Popen[bytes], stderr: IO[bytes], db: PostgresDatabase) -> None:
    code = proc.wait()
    if code != 0:
        stderr.seek(0)
        message = stderr.read().decode("utf-8", "replace") or f"pg_dump exited with {code}"
        raise explain_postgres_error(message, db)


def pg_tool_version(path: str) -> str:
    """`pg_dump (PostgreSQL) 15.20` and the like."""
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


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
