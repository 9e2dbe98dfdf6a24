"""Restoring a custom-format dump: into a scratch database for a drill, or into a
database an operator named, and counting what arrived.

Scratch databases are created on the platform's server under a name of their own and
always dropped again. `pg_restore` runs in a process group of its own, so that a limit
that runs out stops it and its parallel workers together.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
)
from blocks.tools import ends_with_parent
from feedback_ops.errors import OpsError, TimedOut


@dataclass(frozen=True)
class RestoreDrill:
    """What a restore into a scratch database showed."""

    database: str
    seconds: float
    row_counts: dict[str, int]


def scratch_label(label: str) -> str:
    """The part of a scratch database's name that comes from its backup id."""
    return label[:44].lower().replace("-", "_")


@contextmanager
def scratch_database(server: PostgresDatabase, label: str) -> Iterator[PostgresDatabase]:
    """A new empty database on `server`, dropped (with its connections) on leaving.
    Its name carries the whole `label` (a backup id) so two drills of backups taken in
    the same second are told apart; PostgreSQL's limit is 63 bytes."""
    name = f"fo_scratch_{scratch_label(label)}_{secrets.token_hex(3)}"
    admin = connect(server, autocommit=True)
    try:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except Exception as exc:
        admin.close()
        raise explain_postgres_error(str(exc), server) from None
    try:
        yield server.with_database(name)
    finally:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.close()


PROGRESS_SECONDS = 5.0


def restore_file(
    dump: Path,
    target: PostgresDatabase,
    jobs: int,
    timeout_seconds: float,
    on_tick: Callable[[PostgresDatabase], None] | None = None,
) -> float:
    """`pg_restore --jobs` of a custom-format dump into `target`; returns the seconds.
    `on_tick(target)` runs every PROGRESS_SECONDS while pg_restore works.

    Raises:
        TimedOut: pg_restore did not finish within `timeout_seconds` (it is stopped,
            workers included).
        OpsError: pg_restore failed; the message is libpq's reason in one line.
    """
    with connect(target) as conn:
        major = server_major(conn)
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            find_pg_tool("pg_restore", major),
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            f"--jobs={jobs}",
            "--dbname",
            target.database,
            str(dump),
        ],
        env=child_env(target),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=ends_with_parent,  # noqa: PLW1509 - prebuilt, async-signal-safe
    )
    deadline = started + timeout_seconds
    try:
        while True:
            left = deadline - time.monotonic()
            try:
                _out, err = proc.communicate(timeout=max(0.0, min(PROGRESS_SECONDS, left)))
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    raise TimedOut(
                        f"pg_restore into {target.display_name} did not finish within "
                        f"{timeout_seconds:g} s"
                    ) from None
                if on_tick is not None:
                    on_tick(target)
    finally:
        _stop_group(proc)
    if proc.returncode != 0:
        raise explain_postgres_error(err or "pg_restore failed", target)
    return time.monotonic() - started


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """Stop pg_restore and every worker it forked, if any is still running."""
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def count_restored(target: PostgresDatabase) -> dict[str, int]:
    """Exact row counts of every table in `target`."""
    with connect(target) as conn:
        return count_rows(conn, list_tables(conn))


def compare_counts(expected: dict[str, int], actual: dict[str, int]) -> list[str]:
    """Human-readable differences between the manifest's counts and the restored ones."""
    problems = []
    for table in sorted(set(expected) | set(actual)):
        want, got = expected.get(table), actual.get(table)
        if want is None:
            problems.append(f"{table}: restored but not in the manifest")
        elif got is None:
            problems.append(f"{table}: in the manifest ({want} rows) but not restored")
        elif want != got:
            problems.append(f"{table}: {got} rows restored, manifest says {want}")
    return problems


def drill(
    server: PostgresDatabase,
    dump: Path,
    manifest: dict[str, Any],
    jobs: int,
    timeout_seconds: float,
    on_tick: Callable[[PostgresDatabase], None] | None = None,
) -> RestoreDrill:
    """Restore into a scratch database, count every table, compare with the manifest;
    `on_tick` as for `restore_file`."""
    with scratch_database(server, str(manifest["id"])) as scratch:
        seconds = restore_file(dump, scratch, jobs, timeout_seconds, on_tick)
        counts = count_restored(scratch)
    problems = compare_counts(manifest.get("tables", {}), counts)
    if problems:
        raise OpsError(
            f"backup {manifest['id']} restored with different row counts: "
            + "; ".join(problems[:5])
            + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        )
    return RestoreDrill(scratch.database, seconds, counts)


def existing_tables(server: PostgresDatabase, name: str) -> dict[str, int] | None:
    """Row counts of the tables in database `name`, or None when it does not exist."""
    with connect(server, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    if not found:
        return None
    with connect(server.with_database(name)) as conn:
        return count_rows(conn, list_tables(conn))


def drop_database(server: PostgresDatabase, name: str) -> bool:
    """Drop database `name` on `server` with its connections; False when it was gone.

    Raises:
        OpsError: it is the server block's own database (never a scratch one).
    """
    if name == server.database:
        raise OpsError(f"refusing to drop {server.display_name}: it is not a scratch database")
    with connect(server, autocommit=True) as conn:
        gone = existing_tables(server, name) is None
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
    return not gone


def create_target(server: PostgresDatabase, name: str, replace: dict[str, int] | None) -> None:
    """Create database `name`; with `replace`, first drop the existing one, after checking
    it still holds exactly those tables and rows (what the operator approved).

    Raises:
        OpsError: the database changed since the approval (nothing is dropped), or the
            server refused.
    """
    with connect(server, autocommit=True) as conn:
        if replace is not None:
            now = existing_tables(server, name) or {}
            if now != replace:
                raise OpsError(
                    f"database {name!r} changed since the approval; nothing was replaced"
                )
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except Exception as exc:
            raise explain_postgres_error(str(exc), server) from None
