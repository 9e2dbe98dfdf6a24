"""database-restore: into a new database by default; replacing needs overwrite and an
approval in the UI; the source itself is never a target."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.flow_runs import resume_flow_run
from support import pg
from support.pgcompare import fingerprint

from flows.database_backup import database_backup
from flows.database_restore import database_restore, default_target_name


def failure_of(state: Any) -> str:
    assert state.is_failed(), state
    return str(state.result(raise_on_failure=False))


@pytest.fixture
def source(platform_db: str, tmp_path: Path, save_blocks: Any, pg_admin_url: str) -> Any:
    """A backed-up platform database; restored databases are dropped afterwards."""
    params = save_blocks(DATABASE_URL=platform_db, BACKUP_URL=f"file://{tmp_path}/b")
    backup = database_backup(**params)
    made: list[str] = []
    yield params, backup, made
    for name in made:
        pg.drop_database(pg_admin_url, name)


def restore_params(params: dict[str, Any]) -> dict[str, Any]:
    return {"database_block": params["database_block"], "storage_block": params["storage_block"]}


def test_restores_into_a_new_database_named_for_the_backup(
    source: Any, platform_db: str, pg_admin_url: str
) -> None:
    params, backup, made = source
    name = default_target_name(backup.backup_id)
    made.append(name)
    result = database_restore(**restore_params(params))

    assert result.backup_id == backup.backup_id and result.replaced_tables == 0
    assert result.target.endswith(f"/{name}")
    restored = pg.with_database(pg_admin_url, name)
    assert fingerprint(restored) == fingerprint(platform_db)
    assert result.row_counts["public.feedback"] == fingerprint(platform_db)["public.feedback"][0]


def test_newest_backup_before_a_stockholm_time(
    source: Any, tmp_path: Path, pg_admin_url: str
) -> None:
    params, first, made = source
    time.sleep(1.1)  # backup ids and times have one-second resolution
    second = database_backup(**params)
    manifests = {
        json.loads(p.read_text())["id"]: json.loads(p.read_text())
        for p in (tmp_path / "b").rglob("*.manifest.json")
    }
    between = datetime.fromisoformat(manifests[second.backup_id]["created_at"])
    made.append("restore_pick")
    result = database_restore(
        **restore_params(params), before=between, target_database="restore_pick"
    )
    assert result.backup_id == first.backup_id

    too_early = datetime.fromisoformat(manifests[first.backup_id]["created_at"]) - timedelta(days=1)
    state = database_restore(**restore_params(params), before=too_early, return_state=True)
    assert failure_of(state).startswith("no database backup before ")
    assert "; the oldest is from " in failure_of(state)


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        ({"jobs": 0}, "jobs: Input should be greater than or equal to 1"),
        ({"jobs": 17}, "jobs: Input should be less than or equal to 16"),
        ({"target_database": "x; DROP DATABASE postgres"}, "target_database: String should"),
        ({"backup_id": "../../etc/passwd"}, "backup_id: String should match pattern"),
    ],
    ids=["jobs=0", "jobs=17", "target_database", "backup_id"],
)
def test_bad_parameters_fail_before_the_first_step(
    source: Any, pg_admin_url: str, bad: dict[str, Any], said: str
) -> None:
    """As a run from the UI or the API would: Prefect validates against the same schema."""
    params, backup, made = source
    name = default_target_name(backup.backup_id)
    made.append(name)
    state = database_restore(**restore_params(params) | bad, return_state=True)

    assert state.is_failed()
    assert said in str(state.message)
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    with get_client(sync_client=True) as client:
        steps = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
    assert steps == []
    with psycopg.connect(pg_admin_url) as conn:
        found = conn.execute(
            "SELECT datname FROM pg_database WHERE datname IN (%s, %s)",
            (name, "x; DROP DATABASE postgres"),
        ).fetchall()
    assert found == []


def test_the_source_itself_is_refused(source: Any, platform_db: str) -> None:
    params, _backup, _made = source
    before = fingerprint(platform_db)
    name = platform_db.rsplit("/", 1)[1]
    state = database_restore(**restore_params(params), target_database=name, return_state=True)
    assert failure_of(state) == (
        f"refusing to restore into postgres@127.0.0.1:5432/{name}: it is the source database "
        "itself; restore into a new database and switch over"
    )
    assert fingerprint(platform_db) == before


def test_a_database_with_tables_needs_overwrite(source: Any, db_factory: Any) -> None:
    params, _backup, _made = source
    other = db_factory()
    with psycopg.connect(other, autocommit=True) as conn:
        conn.execute("CREATE TABLE keep_me AS SELECT 1 AS id")
    name = other.rsplit("/", 1)[1]
    state = database_restore(**restore_params(params), target_database=name, return_state=True)
    assert failure_of(state) == (
        f"database {name!r} already has 1 tables; pass overwrite=True to replace it "
        "(an approval is asked in the UI)"
    )
    assert fingerprint(other) == {"public.keep_me": fingerprint(other)["public.keep_me"]}


def _run_and_answer(params: dict[str, Any], name: str, answer: dict[str, Any]) -> Any:
    """Start an overwrite restore, wait for its approval pause, answer it."""
    states: list[Any] = []
    runner = threading.Thread(
        target=lambda: states.append(
            database_restore(
                **restore_params(params), target_database=name, overwrite=True, return_state=True
            )
        )
    )
    runner.start()
    deadline = time.monotonic() + 60
    paused = None
    with get_client(sync_client=True) as client:
        while paused is None and time.monotonic() < deadline:
            runs = client.read_flow_runs()
            paused = next((r for r in runs if r.state is not None and r.state.is_paused()), None)
            time.sleep(0.2)
    assert paused is not None, "the restore never asked for approval"
    resume_flow_run(paused.id, run_input=answer)
    runner.join(timeout=120)
    return states[0]


def test_overwrite_with_approval_replaces_the_database(
    source: Any, db_factory: Any, platform_db: str
) -> None:
    params, _backup, _made = source
    other = db_factory()
    with psycopg.connect(other, autocommit=True) as conn:
        conn.execute("CREATE TABLE stale AS SELECT g AS id FROM generate_series(1, 5) g")
    name = other.rsplit("/", 1)[1]
    state = _run_and_answer(params, name, {"approve": True, "type_database_name_to_confirm": name})
    assert state.is_completed(), failure_of(state)
    assert state.result().replaced_tables == 1
    assert fingerprint(other) == fingerprint(platform_db)  # `stale` is gone


def test_overwrite_without_the_typed_name_changes_nothing(source: Any, db_factory: Any) -> None:
    params, _backup, _made = source
    other = db_factory()
    with psycopg.connect(other, autocommit=True) as conn:
        conn.execute("CREATE TABLE stale AS SELECT g AS id FROM generate_series(1, 5) g")
    before = fingerprint(other)
    name = other.rsplit("/", 1)[1]
    state = _run_and_answer(params, name, {"approve": True, "type_database_name_to_confirm": "x"})
    assert failure_of(state) == f"the replacement of {name!r} was not approved; nothing was changed"
    assert fingerprint(other) == before


def test_restore_needs_only_the_storage(source: Any, platform_db: str, pg_admin_url: str) -> None:
    params, backup, made = source
    with psycopg.connect(platform_db, autocommit=True) as conn:
        conn.execute("DROP SCHEMA ops CASCADE")  # the catalog is gone
    made.append("restore_no_catalog")
    result = database_restore(
        **restore_params(params), backup_id=backup.backup_id, target_database="restore_no_catalog"
    )
    assert result.backup_id == backup.backup_id
    restored = pg.with_database(pg_admin_url, "restore_no_catalog")
    assert fingerprint(restored) == fingerprint(platform_db)


def test_unknown_backup_id(source: Any, tmp_path: Path) -> None:
    params, _backup, _made = source
    state = database_restore(
        **restore_params(params), backup_id="database-20200101T000000Z-abcdef", return_state=True
    )
    assert failure_of(state) == (
        f"no backup 'database-20200101T000000Z-abcdef' in file://{tmp_path}/b"
    )
