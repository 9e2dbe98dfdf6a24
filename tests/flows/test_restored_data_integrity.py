"""validate-restored-data: the runbook's "Verify data integrity" after a restore, on real
PostgreSQL: row counts against the manifest, the businesses count, every org number by
its check digit, and no foreign key pointing at a missing row."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prefect import flow
from stdnum.se import orgnr
from support import pg
from support.net import wait_until
from support.platform_schema import is_valid_org_number, planned_counts

from blocks import PostgresDatabase
from blocks.postgres.integrity import (
    INVALID_SAMPLE,
    CountMismatch,
    IntegrityReport,
    InvalidOrgNumber,
    check_integrity,
)
from feedback_ops.errors import OpsError, TransientError
from flows.database_backup import database_backup
from flows.database_restore import database_restore, default_target_name
from tasks.postgres import validate_restored_data

SEEDED = planned_counts()
BUSINESSES = SEEDED["public.businesses"]


def report_of(url: str, expected: dict[str, int] | None = None) -> IntegrityReport:
    return check_integrity(PostgresDatabase.from_url(url), SEEDED if expected is None else expected)


def execute(url: str, *statements: str, replica: bool = False) -> None:
    """Run statements as the superuser; with `replica`, with triggers (and so foreign
    key checks and cascades) off, as a careless load or restore would."""
    with psycopg.connect(url, autocommit=True) as conn:
        if replica:
            conn.execute("SET session_replication_role = replica")
        for statement in statements:
            conn.execute(statement)


def scalar(url: str, query: str) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def corrupt_org_numbers(url: str, ids: list[int]) -> dict[int, str]:
    """Change the check digit of these businesses' org numbers; returns the new ones."""
    wrong: dict[int, str] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id, org_number FROM businesses WHERE id = ANY(%s) ORDER BY id", (ids,)
        ).fetchall()
        for business_id, number in rows:
            wrong[business_id] = number[:-1] + str((int(number[-1]) + 1) % 10)
            conn.execute(
                "UPDATE businesses SET org_number = %s WHERE id = %s",
                (wrong[business_id], business_id),
            )
    assert len(wrong) == len(ids)
    return wrong


# --- the seeded platform ----------------------------------------------------------------


def test_a_clean_seeded_database_passes(platform_db: str) -> None:
    report = report_of(platform_db)

    assert report.ok and report.problems == ()
    assert report.row_counts == SEEDED and report.count_mismatches == ()
    assert report.businesses == BUSINESSES
    assert (report.org_numbers_checked, report.invalid_org_numbers) == (BUSINESSES, 0)
    assert report.null_org_numbers == 0 and report.invalid_org_number_sample == ()
    assert report.foreign_keys_checked == 4 and report.orphaned_foreign_keys == ()
    assert report.database == PostgresDatabase.from_url(platform_db).display_name


def test_the_seed_and_stdnum_agree_on_org_numbers(platform_db: str) -> None:
    with psycopg.connect(platform_db) as conn:
        seeded = [row[0] for row in conn.execute("SELECT org_number FROM businesses")]
    assert len(seeded) == BUSINESSES
    assert all(is_valid_org_number(n) and orgnr.is_valid(n) for n in seeded)

    # On every NNNNNN-NNNN number both say the same: the check digit is the Luhn digit.
    rng = random.Random(13)
    numbers = [f"{rng.randrange(10**6):06d}-{rng.randrange(10**4):04d}" for _ in range(20000)]
    assert [is_valid_org_number(n) for n in numbers] == [orgnr.is_valid(n) for n in numbers]
    assert 1500 < sum(map(orgnr.is_valid, numbers)) < 2500  # about one in ten is valid


# --- organisation numbers ---------------------------------------------------------------


def test_invalid_org_numbers_are_counted_and_listed(platform_db: str) -> None:
    wrong = corrupt_org_numbers(platform_db, [199, 3, 50])

    report = report_of(platform_db)

    assert not report.ok
    assert report.invalid_org_numbers == 3 and report.org_numbers_checked == BUSINESSES
    assert report.invalid_org_number_sample == tuple(
        InvalidOrgNumber(i, wrong[i]) for i in (3, 50, 199)
    )
    assert report.problems == (
        f"3 of {BUSINESSES} org numbers in public.businesses are not valid Swedish "
        f"organisation numbers (check digit): id 3 {wrong[3]!r}, id 50 {wrong[50]!r}, "
        f"id 199 {wrong[199]!r}",
    )
    assert report.null_org_numbers == 0 and report.orphaned_foreign_keys == ()


def test_the_list_is_capped_and_the_count_exact(platform_db: str) -> None:
    ids = list(range(2, 2 + 2 * 30, 2))  # 30 businesses
    wrong = corrupt_org_numbers(platform_db, ids)

    report = report_of(platform_db)

    assert report.invalid_org_numbers == 30
    assert report.invalid_org_number_sample == tuple(
        InvalidOrgNumber(i, wrong[i]) for i in ids[:INVALID_SAMPLE]
    )
    named = ", ".join(f"id {i} {wrong[i]!r}" for i in ids[:5])
    assert report.problems == (
        f"30 of {BUSINESSES} org numbers in public.businesses are not valid Swedish "
        f"organisation numbers (check digit): {named} and 25 more",
    )


def test_null_org_numbers_are_counted_apart(platform_db: str) -> None:
    execute(
        platform_db,
        "ALTER TABLE businesses ALTER COLUMN org_number DROP NOT NULL",
        "UPDATE businesses SET org_number = NULL WHERE id IN (10, 20)",
    )
    wrong = corrupt_org_numbers(platform_db, [30])

    report = report_of(platform_db)

    assert report.null_org_numbers == 2
    assert report.org_numbers_checked == BUSINESSES - 2
    assert report.invalid_org_number_sample == (InvalidOrgNumber(30, wrong[30]),)
    assert report.problems == (
        f"1 of {BUSINESSES - 2} org numbers in public.businesses are not valid Swedish "
        f"organisation numbers (check digit): id 30 {wrong[30]!r}",
        "2 businesses in public.businesses have no org number (NULL)",
    )


def test_a_number_of_the_wrong_shape_is_invalid(platform_db: str) -> None:
    execute(
        platform_db,
        "ALTER TABLE businesses DROP CONSTRAINT businesses_org_number_check",
        "UPDATE businesses SET org_number = '55A036-0793' WHERE id = 1",
        "UPDATE businesses SET org_number = '' WHERE id = 2",
        "UPDATE businesses SET org_number = '556036-07931' WHERE id = 3",
    )

    report = report_of(platform_db)

    assert [s.business_id for s in report.invalid_org_number_sample] == [1, 2, 3]
    assert report.invalid_org_numbers == 3


# --- the businesses count and the manifest's counts --------------------------------------


def test_counts_that_differ_from_the_manifest_are_named(platform_db: str) -> None:
    execute(platform_db, "CREATE TABLE public.extra AS SELECT 1 AS id")
    expected = SEEDED | {"public.feedback": 3001, "public.refunds": 5}

    report = report_of(platform_db, expected)

    assert report.count_mismatches == (
        CountMismatch("public.extra", None, 1),
        CountMismatch("public.feedback", 3001, 3000),
        CountMismatch("public.refunds", 5, None),
    )
    assert report.problems == (
        "public.extra: restored but not in the manifest",
        "public.feedback: 3000 rows restored, manifest says 3001",
        "public.refunds: in the manifest (5 rows) but not restored",
    )


def test_no_businesses_is_a_problem_even_when_the_manifest_agrees(platform_db: str) -> None:
    execute(platform_db, "TRUNCATE businesses CASCADE")
    expected = {table: 0 for table in SEEDED}

    report = report_of(platform_db, expected)

    assert report.businesses == 0 and report.org_numbers_checked == 0
    assert report.problems == (
        "public.businesses is empty: SELECT COUNT(*) FROM businesses gave 0",
    )


def test_a_missing_businesses_table(platform_db: str) -> None:
    execute(platform_db, "DROP TABLE businesses CASCADE")
    expected = {t: n for t, n in SEEDED.items() if t != "public.businesses"}

    report = report_of(platform_db, expected)

    assert report.businesses is None
    assert report.problems == ("public.businesses does not exist: no businesses to serve",)


# --- orphaned foreign keys ----------------------------------------------------------------


def test_child_rows_without_a_parent_are_counted_per_constraint(platform_db: str) -> None:
    execute(
        platform_db,
        *(
            "INSERT INTO pos_connections (business_id, provider, external_location_id, status) "
            f"VALUES (999{i}, 'square', 'ORPHAN-{i}', 'active')"
            for i in range(3)
        ),
        replica=True,
    )
    report = report_of(platform_db, SEEDED | {"public.pos_connections": 403})

    [orphaned] = report.orphaned_foreign_keys
    assert orphaned.orphans == 3
    assert orphaned.constraint.name == "pos_connections_business_id_fkey"
    assert report.problems == (
        "foreign key pos_connections_business_id_fkey on public.pos_connections "
        "(business_id) → public.businesses (id): 3 rows point at no parent row",
    )
    assert report.foreign_keys_checked == 4


def test_a_parent_deleted_without_its_cascade_leaves_orphans(platform_db: str) -> None:
    connections = scalar(platform_db, "SELECT count(*) FROM pos_connections WHERE business_id = 7")
    feedback = scalar(platform_db, "SELECT count(*) FROM feedback WHERE business_id = 7")
    assert connections and feedback
    execute(platform_db, "DELETE FROM businesses WHERE id = 7", replica=True)

    report = report_of(platform_db, SEEDED | {"public.businesses": BUSINESSES - 1})

    assert {o.constraint.name: o.orphans for o in report.orphaned_foreign_keys} == {
        "feedback_business_id_fkey": feedback,
        "pos_connections_business_id_fkey": connections,
    }
    assert report.problems == (
        "foreign key feedback_business_id_fkey on public.feedback (business_id) → "
        f"public.businesses (id): {feedback} row{'s point' if feedback > 1 else ' points'} "
        "at no parent row",
        "foreign key pos_connections_business_id_fkey on public.pos_connections "
        f"(business_id) → public.businesses (id): {connections} "
        f"row{'s point' if connections > 1 else ' points'} at no parent row",
    )


LEDGER_SQL = '''
CREATE SCHEMA "Bok föring";
CREATE TABLE "Bok föring".konton (
    region text, nr integer, namn text NOT NULL, PRIMARY KEY (region, nr)
);
CREATE TABLE "Bok föring"."poster ""2027""" (
    id serial PRIMARY KEY,
    region text,
    "konto nr" integer,
    CONSTRAINT "poster → konto" FOREIGN KEY (region, "konto nr")
        REFERENCES "Bok föring".konton (region, nr)
);
CREATE TABLE "Bok föring".strikt (
    id serial PRIMARY KEY,
    region text,
    nr integer,
    FOREIGN KEY (nr, region) REFERENCES "Bok föring".konton (nr, region) MATCH FULL
);
INSERT INTO "Bok föring".konton VALUES ('SE-AB', 1910, 'Kassa'), ('SE-AB', 1930, 'Bank');
INSERT INTO "Bok föring"."poster ""2027""" (region, "konto nr")
    VALUES ('SE-AB', 1910), ('SE-AB', 1930), ('SE-AB', NULL), (NULL, 4010);
INSERT INTO "Bok föring".strikt (region, nr) VALUES ('SE-AB', 1910), (NULL, NULL);
'''


def test_a_composite_key_in_another_schema(platform_db: str) -> None:
    execute(platform_db, LEDGER_SQL)
    execute(
        platform_db,
        # Orphans: a region with no such account, an account in no such region.
        '''INSERT INTO "Bok föring"."poster ""2027""" (region, "konto nr")
           VALUES ('SE-AB', 4010), ('SE-C', 1910)''',
        # MATCH FULL forbids a half-NULL key, and this one matches nothing.
        """INSERT INTO "Bok föring".strikt (region, nr) VALUES ('SE-AB', NULL), ('SE-C', 1)""",
        replica=True,
    )
    expected = SEEDED | {
        "Bok föring.konton": 2,
        'Bok föring.poster "2027"': 6,
        "Bok föring.strikt": 4,
    }

    report = report_of(platform_db, expected)

    assert report.count_mismatches == ()
    assert report.foreign_keys_checked == 6
    assert [(o.constraint.name, o.orphans) for o in report.orphaned_foreign_keys] == [
        ("poster → konto", 2),
        ("strikt_nr_region_fkey", 2),
    ]
    poster = report.orphaned_foreign_keys[0].constraint
    assert (poster.schema, poster.table, poster.columns) == (
        "Bok föring",
        'poster "2027"',
        ("region", "konto nr"),
    )
    assert (poster.parent_table, poster.parent_columns) == ("konton", ("region", "nr"))
    assert report.problems == (
        'foreign key poster → konto on Bok föring.poster "2027" (region, konto nr) → '
        "Bok föring.konton (region, nr): 2 rows point at no parent row",
        "foreign key strikt_nr_region_fkey on Bok föring.strikt (nr, region) → "
        "Bok föring.konton (nr, region): 2 rows point at no parent row",
    )


def test_a_partitioned_child_is_counted_once(platform_db: str) -> None:
    execute(
        platform_db,
        """CREATE TABLE visits (business_id bigint REFERENCES businesses (id), at date)
           PARTITION BY RANGE (at)""",
        "CREATE TABLE visits_2026 PARTITION OF visits FOR VALUES FROM ('2026-01-01') TO "
        "('2027-01-01')",
        "CREATE TABLE visits_2027 PARTITION OF visits FOR VALUES FROM ('2027-01-01') TO "
        "('2028-01-01')",
        "INSERT INTO visits VALUES (1, '2026-05-01'), (2, '2027-05-01')",
    )
    execute(
        platform_db,
        "INSERT INTO visits VALUES (5000, '2026-06-01'), (5001, '2027-06-01'), "
        "(5002, '2027-07-01')",
        replica=True,
    )
    expected = SEEDED | {"public.visits_2026": 2, "public.visits_2027": 3}

    report = report_of(platform_db, expected)

    assert [(o.constraint.table, o.orphans) for o in report.orphaned_foreign_keys] == [
        ("visits", 3)
    ]
    assert report.foreign_keys_checked == 5


# --- when it cannot look -----------------------------------------------------------------


def test_a_database_that_does_not_exist_fails_in_one_line(pg_admin_url: str) -> None:
    db = PostgresDatabase.from_url(pg.with_database(pg_admin_url, "fo_test_no_such_db"))
    with pytest.raises(OpsError) as caught:
        check_integrity(db, SEEDED)
    assert not isinstance(caught.value, TransientError)
    assert str(caught.value) == (
        "PostgreSQL at 127.0.0.1:5432/fo_test_no_such_db: database 'fo_test_no_such_db' "
        "does not exist"
    )


@pytest.fixture
def locked_feedback(platform_db: str) -> Iterator[psycopg.Connection[Any]]:
    """A session holding an exclusive lock on `feedback` until the test ends."""
    with psycopg.connect(platform_db) as holder:
        holder.execute("LOCK TABLE feedback IN ACCESS EXCLUSIVE MODE")
        yield holder
        holder.rollback()


def test_a_connection_lost_mid_check_is_transient(
    platform_db: str, locked_feedback: psycopg.Connection[Any]
) -> None:
    db = PostgresDatabase.from_url(platform_db)
    outcome: list[BaseException | IntegrityReport] = []

    def run() -> None:
        try:
            outcome.append(check_integrity(db, SEEDED))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    checker = threading.Thread(target=run)
    checker.start()

    def waiting_pid() -> int | None:
        pid: int | None = scalar(
            platform_db,
            "SELECT max(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'feedback-ops' AND wait_event_type = 'Lock'",
        )
        return pid

    wait_until(lambda: waiting_pid() is not None, timeout=30, what="the check to wait")
    execute(platform_db, f"SELECT pg_terminate_backend({waiting_pid()})")
    checker.join(timeout=30)

    [failure] = outcome
    assert isinstance(failure, TransientError)
    assert str(failure) == (
        f"PostgreSQL at 127.0.0.1:5432/{db.database}: connection lost while checking the "
        "restored data"
    )


# --- the step, and after a real restore --------------------------------------------------


@flow(name="validate-after-restore")
def validate_after_restore(target: PostgresDatabase, counts: dict[str, int]) -> IntegrityReport:
    """The step as a DR flow runs it."""
    return validate_restored_data(target, counts)


def test_the_step_reports_problems_and_does_not_fail(platform_db: str) -> None:
    corrupt_org_numbers(platform_db, [4])
    target = PostgresDatabase.from_url(platform_db)

    state = validate_after_restore(target, SEEDED, return_state=True)

    assert state.is_completed()
    report = state.result()
    assert report.invalid_org_numbers == 1 and not report.ok


def test_a_real_restore_validates_against_its_manifest(
    platform_db: str, tmp_path: Path, save_blocks: Any, pg_admin_url: str
) -> None:
    params = save_blocks(DATABASE_URL=platform_db, BACKUP_URL=f"file://{tmp_path}/b")
    backup = database_backup(**params)
    [path] = (tmp_path / "b").rglob(f"{backup.backup_id}.manifest.json")
    manifest = json.loads(path.read_text())
    name = default_target_name(backup.backup_id)
    try:
        database_restore(
            database_block=params["database_block"], storage_block=params["storage_block"]
        )
        target = PostgresDatabase.from_url(pg.with_database(pg_admin_url, name))

        report = validate_after_restore(target, manifest["tables"])

        assert report.ok, report.problems
        assert report.row_counts == manifest["tables"]
        assert report.businesses == BUSINESSES == manifest["tables"]["public.businesses"]
        assert report.org_numbers_checked == BUSINESSES
        assert report.foreign_keys_checked >= 4
    finally:
        pg.drop_database(pg_admin_url, name)
