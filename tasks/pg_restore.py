"""Restore drills: a backup restored into a scratch database, counted, and dropped.

Plain functions; `tasks/postgres.py` wraps them as tasks. The scratch database is
created on the platform's server under a name of its own and always dropped again.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg import sql

from blocks.postgres import PostgresDatabase
from feedback_ops.errors import OpsError
from tasks.object_store import Digest, LocalStore, ObjectStore
from tasks.pg_dump import connect, count_rows, explain_postgres_error, find_pg_tool, list_tables


@dataclass(frozen=True)
class RestoreDrill:
    """What a restore into a scratch database showed."""

    database: str
    seconds: float
    row_counts: dict[str, int]


@contextmanager
def local_copy(store: ObjectStore, key: str, expected: Digest) -> Iterator[Path]:
    """The object as a local file pg_restore can seek in, checked against `expected`.

    A local store's file is used where it is; anything else is streamed once into a
    temporary file, hashing on the way, and removed afterwards.
    """
    from tasks.object_store import digest_chunks

    if isinstance(store, LocalStore):
        path = store.root / key
        actual = digest_chunks(store.read_chunks(key))
        _same(store.url_for(key), actual, expected)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="fo-verify-") as tmp:
        path = Path(tmp) / Path(key).name
        with open(path, "wb") as out:
            chunks = store.read_chunks(key)

            def tee() -> Iterator[bytes]:
                for chunk in chunks:
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


@contextmanager
def scratch_database(server: PostgresDatabase, label: str) -> Iterator[PostgresDatabase]:
    """A new empty database on `server`, dropped (with its connections) on leaving."""
    name = f"fo_scratch_{label[:24].lower().replace('-', '_')}_{secrets.token_hex(3)}"
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


def restore_file(dump: Path, target: PostgresDatabase, jobs: int) -> float:
    """`pg_restore --jobs` of a custom-format dump into `target`; returns the seconds."""
    conn = connect(target)
    major = conn.info.server_version // 10000
    conn.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | target.libpq_env()
    started = time.monotonic()
    done = subprocess.run(
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
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise explain_postgres_error(done.stderr or "pg_restore failed", target)
    return time.monotonic() - started


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
    server: PostgresDatabase, dump: Path, manifest: dict[str, Any], jobs: int
) -> RestoreDrill:
    """Restore into a scratch database, count every table, compare with the manifest."""
    with scratch_database(server, str(manifest["id"])) as scratch:
        seconds = restore_file(dump, scratch, jobs)
        counts = count_restored(scratch)
    problems = compare_counts(manifest.get("tables", {}), counts)
    if problems:
        raise OpsError(
            f"backup {manifest['id']} restored with different row counts: "
            + "; ".join(problems[:5])
            + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        )
    return RestoreDrill(scratch.database, seconds, counts)
