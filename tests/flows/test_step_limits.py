"""A hung step fails with one line that names it and its limit, and leaves no lock held:
a database that accepts connections and never answers, a `pg_dump` stopped with SIGSTOP
mid-stream, `pg_restore` reading a pipe that never delivers, and a step that outlives the
limit Prefect holds it to."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from support.net import wait_until
from support.receivers import silent_listener

from blocks import PostgresDatabase
from blocks.postgres.dump import PG_DUMP_APPLICATION_NAME
from blocks.postgres.restore import restore_file
from feedback_ops.errors import OpsError, TimedOut
from flows.database_backup import database_backup
from flows.locks import lock_name, system_lock
from tasks import QUICK, step


def active_slots(name: str) -> int:
    """How many slots of the global concurrency limit `name` are taken now."""
    with get_client(sync_client=True) as client:
        return int(client.read_global_concurrency_limit_by_name(name).active_slots)


def failure_of(state: Any) -> str:
    assert state.is_failed(), state
    return str(state.result(raise_on_failure=False))


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never says a word."""
    with silent_listener() as port:
        yield port


def test_a_database_that_accepts_and_never_answers_fails_the_dump_and_frees_the_lock(
    silent_port: int, platform_db: str, tmp_path: Path, save_blocks: Any
) -> None:
    silent = f"postgresql://postgres@127.0.0.1:{silent_port}/platform?connect_timeout=2"
    params = save_blocks(
        DATABASE_URL=silent, OPS_DATABASE_URL=platform_db, BACKUP_URL=f"file://{tmp_path}"
    )
    started = time.monotonic()

    state = database_backup(**params, return_state=True)

    assert failure_of(state) == (
        f"dump-database: PostgreSQL at 127.0.0.1:{silent_port}/platform is unreachable: "
        "no answer within 2 s (connect_timeout)"
    )
    # Not retried: a peer that said nothing for its whole limit gets no second limit.
    assert time.monotonic() - started < 30
    assert active_slots(lock_name("postgres", f"127.0.0.1:{silent_port}:platform")) == 0
    assert list(tmp_path.rglob("*.dump")) == [] and list(tmp_path.rglob("*.json")) == []


def stop_pg_dump_once_streaming(store: Path) -> threading.Thread:
    """SIGSTOP this process's pg_dump as soon as its partial upload has bytes."""

    def stop() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(p.stat().st_size for p in store.rglob(".*.partial-*")):
                for child in psutil.Process().children(recursive=True):
                    if child.name() == "pg_dump":
                        child.send_signal(signal.SIGSTOP)
                        return
            time.sleep(0.02)

    stopper = threading.Thread(target=stop, daemon=True)
    stopper.start()
    return stopper


def test_a_stopped_pg_dump_is_killed_after_its_silence_and_leaves_nothing(
    platform_db: str, tmp_path: Path, save_blocks: Any
) -> None:
    with psycopg.connect(platform_db, autocommit=True) as conn:
        # Enough rows that pg_dump is still streaming when it is stopped.
        conn.execute(
            "CREATE TABLE events AS SELECT g AS id, md5(g::text) AS a "
            "FROM generate_series(1, 1000000) g"
        )
    store = tmp_path / "backups"
    params = save_blocks(DATABASE_URL=platform_db, BACKUP_URL=f"file://{store}")
    stopper = stop_pg_dump_once_streaming(store)

    state = database_backup(**params, stall_timeout_seconds=10, return_state=True)

    stopper.join(timeout=5)
    message = failure_of(state)
    assert message == (
        "dump-database: pg_dump sent nothing for 10 s (stopped or hung) and was killed"
    )
    children = [p.name() for p in psutil.Process().children(recursive=True)]
    assert "pg_dump" not in children
    db = PostgresDatabase.from_url(platform_db)
    assert active_slots(lock_name("postgres", f"{db.host}:{db.port}:{db.database}")) == 0
    assert [p for p in store.rglob("*") if p.is_file()] == []
    with psycopg.connect(platform_db) as conn:
        assert conn.execute("SELECT status, error FROM ops.backup_records").fetchall() == [
            ("failed", message)
        ]

    def pg_dump_sessions() -> int:
        with psycopg.connect(platform_db) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                (PG_DUMP_APPLICATION_NAME,),
            ).fetchone()
        assert row is not None
        return int(row[0])

    # pg_dump's session ends with it: nothing goes on holding the tables' locks.
    wait_until(lambda: pg_dump_sessions() == 0, timeout=10, what="pg_dump's session to end")


@pytest.fixture
def stalled_pipe(tmp_path: Path) -> Iterator[Path]:
    """A named pipe whose writer opens it and never writes."""
    fifo = tmp_path / "backup.dump"
    os.mkfifo(fifo)
    opened = threading.Event()
    held: list[int] = []

    def hold_open() -> None:
        held.append(os.open(fifo, os.O_WRONLY))  # blocks until pg_restore opens it
        opened.set()

    writer = threading.Thread(target=hold_open, daemon=True)
    writer.start()
    yield fifo
    if not opened.is_set():  # pg_restore never opened it: let the writer go
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
    writer.join(timeout=5)
    for fd in held:
        os.close(fd)


def test_pg_restore_of_a_stalled_pipe_is_stopped_at_its_limit(
    stalled_pipe: Path, db_factory: Any
) -> None:
    target = PostgresDatabase.from_url(db_factory())
    started = time.monotonic()

    with pytest.raises(TimedOut) as caught:
        restore_file(stalled_pipe, target, jobs=1, timeout_seconds=2)

    assert str(caught.value) == (f"pg_restore into {target.display_name} did not finish within 2 s")
    assert time.monotonic() - started < 15
    restores = [p for p in psutil.Process().children(recursive=True) if p.name() == "pg_restore"]
    assert restores == []


@step("wait-for-a-pipe", limit=QUICK)
def wait_for_a_pipe(fd: int) -> bytes:
    """Read from a pipe: blocks for as long as nobody writes to it."""
    return os.read(fd, 1)


@flow(name="hung-step-under-a-lock")
def hung_step_under_a_lock(lock: str, fd: int, limit: float) -> bytes:
    """Hold a system's lock around a step that hangs."""
    with system_lock(lock):
        return wait_for_a_pipe.with_options(timeout_seconds=limit)(fd)


# Prefect stops a step at its limit with an alarm signal, as in a served run; the
# signal method of pytest-timeout would own that alarm, so this test uses the thread one.
@pytest.mark.timeout(120, method="thread")
def test_a_step_past_its_limit_fails_in_one_line_and_the_lock_is_free() -> None:
    lock = lock_name("test", f"hung-step-{os.getpid()}-{time.monotonic_ns()}")
    read_end, write_end = os.pipe()
    try:
        started = time.monotonic()
        state = hung_step_under_a_lock(lock, read_end, 1.5, return_state=True)
        elapsed = time.monotonic() - started
    finally:
        os.close(read_end)
        os.close(write_end)

    message = failure_of(state)
    assert message == "wait-for-a-pipe did not finish within 1.5 s"
    assert "\n" not in message
    assert elapsed < 30
    assert active_slots(lock) == 0
    outcome = state.result(raise_on_failure=False)
    assert isinstance(outcome, TimedOut) and isinstance(outcome, OpsError)
