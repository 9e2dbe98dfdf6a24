"""Test fixtures that start REAL services: PostgreSQL, S3 (moto server), tmpfs.

The environment below is set when pytest imports this file, before any test module (and
so before anything) imports prefect: Prefect keeps its home, settings and database in a
session temp dir, and boto3 only ever sees fake credentials.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from support import disk, pg, s3
from support.platform_schema import seed_platform
from support.receivers import HttpRecorder, SmtpReceiver, make_certificates

if TYPE_CHECKING:
    from support.cli import RunCli

SESSION_TMP = tempfile.mkdtemp(prefix="feedback-ops-tests-")
Path(SESSION_TMP, "api-ca").mkdir()

os.environ.update(
    {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # Tests call alerting tasks outside flows too; Prefect warns at each such log.
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
        "PREFECT_HOME": os.path.join(SESSION_TMP, "prefect-home"),
        "AWS_ACCESS_KEY_ID": s3.TEST_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": s3.TEST_SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": s3.REGION,  # Stockholm
        # Never read the developer's ~/.aws files (profiles, real keys, SSO).
        "AWS_CONFIG_FILE": os.path.join(SESSION_TMP, "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(SESSION_TMP, "aws-credentials"),
        # Every Prefect client loads its CA bundle; the test servers speak plain HTTP, so
        # a one-certificate bundle serves as well and halves the cost of each API client
        # (about 50 ms for certifi's, paid several times per flow run and block save).
        "PREFECT_API_SSL_CERT_FILE": str(make_certificates(Path(SESSION_TMP, "api-ca")).ca_file),
    }
)
# A developer's shell may point these at real accounts or servers; tests never should.
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "PREFECT_API_URL",
              "PREFECT_API_KEY"):  # fmt: skip
    os.environ.pop(_name, None)

if "prefect" in sys.modules:  # a plugin or an import above loaded prefect too early
    raise RuntimeError("prefect was imported before tests/conftest.py set PREFECT_HOME")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the session temp dir (Prefect home, AWS dummy files)."""
    shutil.rmtree(SESSION_TMP, ignore_errors=True)


# --- PostgreSQL on the shared server (TEST_DATABASE_URL) ----------------------------------


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """URL of a superuser on the test server; fails with a hint when it does not answer."""
    url = os.environ.get("TEST_DATABASE_URL", pg.DEFAULT_ADMIN_URL)
    problem = pg.server_problem(url)
    if problem:
        pytest.fail(
            f"PostgreSQL at {pg.redact(url)} does not answer ({problem}); "
            "run `make test`, which starts PostgreSQL",
            pytrace=False,
        )
    return url


@pytest.fixture
def platform_db(pg_admin_url: str) -> Iterator[str]:
    """URL of a fresh ``fo_test_<hex>`` database seeded by ``seed_platform`` (scale 1)."""
    with pg.throwaway_database(pg_admin_url) as url:
        seed_platform(url)
        yield url


@pytest.fixture
def db_factory(pg_admin_url: str) -> Iterator[Callable[[], str]]:
    """A ``make_empty_db() -> url`` callable; every database it made is dropped afterwards."""
    created: list[str] = []

    def make_empty_db() -> str:
        url = pg.create_database(pg_admin_url)
        created.append(pg.database_of(url))
        return url

    try:
        yield make_empty_db
    finally:
        errors = []
        for name in reversed(created):
            try:
                pg.drop_database(pg_admin_url, name)
            except psycopg.Error as exc:  # keep dropping the others
                errors.append(f"{name}: {exc}")
        if errors:
            raise RuntimeError("could not drop test databases: " + "; ".join(errors))


# --- a private PostgreSQL with password (SCRAM) authentication ----------------------------

SCRAM_ROLE = "platform"
SCRAM_PASSWORD = "correct-horse-battery"


@pytest.fixture(scope="session")
def scram_cluster() -> Iterator[pg.PrivateCluster]:
    """A private PostgreSQL cluster (scram-sha-256 for every connection), as ``postgres``."""
    with pg.private_cluster(auth="scram-sha-256") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def scram_pg_url(scram_cluster: pg.PrivateCluster) -> str:
    """``postgresql://platform:correct-horse-battery@127.0.0.1:PORT/platform``."""
    return scram_cluster.create_role_and_database(SCRAM_ROLE, SCRAM_PASSWORD, "platform")


# --- S3 (moto server) ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a moto server (in a thread) that accepts any credentials."""
    with s3.threaded_moto() as endpoint_url:
        yield endpoint_url


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> Iterator[str]:
    """Name of a new empty bucket in eu-north-1 on ``s3_endpoint``; emptied and deleted after."""
    client = s3.s3_client(s3_endpoint)
    name = s3.create_bucket(client, s3.new_bucket_name())
    yield name
    s3.empty_and_delete_bucket(client, name)


@pytest.fixture(scope="session")
def s3_denied() -> Iterator[s3.DeniedS3]:
    """A separate moto server enforcing IAM, where ``access_key_id`` gets AccessDenied (403)."""
    with s3.denied_s3() as info:
        yield info


# --- a full disk --------------------------------------------------------------------------


@pytest.fixture
def full_disk_dir() -> Iterator[Path]:
    """A 512 KiB tmpfs directory; writing more than that raises OSError(ENOSPC)."""
    with contextlib.ExitStack() as stack:
        try:
            path = stack.enter_context(disk.tmpfs("512k"))
        except disk.MountNotPermitted as exc:
            pytest.skip(f"cannot mount a tmpfs: {exc}")
        yield path


# --- receivers for alert channels (HTTP providers, SMTP) ----------------------------------
# Each server starts once per module; the function-scoped fixtures reset it, so a test
# sees only its own requests and scripted failures.


@pytest.fixture(scope="module")
def _http_recorder_server() -> Iterator[HttpRecorder]:
    with HttpRecorder() as recorder:
        yield recorder


@pytest.fixture
def http_recorder(_http_recorder_server: HttpRecorder) -> HttpRecorder:
    """A running `HttpRecorder` with no requests, failures or auth rules yet."""
    _http_recorder_server.reset()
    return _http_recorder_server


@pytest.fixture(scope="module")
def _smtp_server() -> Iterator[SmtpReceiver]:
    with SmtpReceiver() as receiver:
        yield receiver


@pytest.fixture
def smtp_receiver(_smtp_server: SmtpReceiver) -> SmtpReceiver:
    """A running `SmtpReceiver` (STARTTLS required, AUTH alerts/smtp-pa55word), emptied."""
    _smtp_server.reset()
    return _smtp_server


# --- one Prefect server per test session -------------------------------------------------


@pytest.fixture(scope="session")
def prefect_api_url() -> Iterator[str]:
    """`http://127.0.0.1:PORT/api` of the session's throwaway Prefect server (SQLite),
    started once (about 9 s) and shared by every flow test, `feedback-ops run` process
    and benchmark smoke run of this session.

    Flow run heartbeats are off: the heartbeat thread sleeps in whole seconds and each
    flow run waits for it to wake at its end, about a second per run; no test here
    depends on heartbeats (they let a worker's server notice a crashed run).
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED,
        PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED,
        PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    # The server does not record task runs from their events, nor keep events or run
    # automations: no test reads them, and on SQLite they double each flow's time.
    server_settings = {
        PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED: False,
        PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED: False,
        PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED: False,
    }
    with (
        temporary_settings(server_settings),
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        url = PREFECT_API_URL.value()
        assert url, "the Prefect test harness gave no API URL"
        yield str(url)


# --- the real `feedback-ops` console script ----------------------------------------------


@pytest.fixture
def feedback_ops(tmp_path: Path) -> RunCli:
    """`feedback_ops(*args, **env)`: run the command in `tmp_path` (or `cwd`), state kept
    in `tmp_path`."""
    # Imported here: support.cli reads the settings table, which imports prefect, and
    # prefect must not be imported before PREFECT_HOME is set above.
    from support.cli import FEEDBACK_OPS, cli_environment

    def run(
        *args: str, timeout: float = 300, cwd: Path | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        environ = cli_environment(tmp_path, **env)
        assert FEEDBACK_OPS.is_file(), f"{FEEDBACK_OPS} is not installed"
        return subprocess.run(
            [str(FEEDBACK_OPS), *args],
            cwd=cwd or tmp_path,
            env=environ,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=timeout,
            check=False,
        )

    return run
