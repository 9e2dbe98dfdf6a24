"""PostgreSQL helpers: throwaway databases on a shared server, and private clusters.

Private clusters run as the unprivileged ``postgres`` system user when we are root
(PostgreSQL refuses to run as root), and as ourselves otherwise.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from support.net import LOOPBACK, free_port

DEFAULT_ADMIN_URL = "postgresql://postgres:postgres@127.0.0.1:5432/postgres"
TEST_DB_PREFIX = "fo_test_"


# --- URLs ------------------------------------------------------------------------------


def with_database(url: str, dbname: str) -> str:
    """Return ``url`` pointing at database ``dbname`` (same server, user and password)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(dbname)))


def database_of(url: str) -> str:
    """Return the database name in a ``postgresql://`` URL."""
    return urlsplit(url).path.lstrip("/")


def redact(url: str) -> str:
    """Return ``url`` with its password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# --- the shared server -------------------------------------------------------------------


def server_problem(url: str, timeout: int = 3) -> str | None:
    """Return why the server at ``url`` cannot be used, or None when it answers."""
    try:
        with psycopg.connect(url, connect_timeout=timeout, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return " ".join(str(exc).split()) or type(exc).__name__
    return None


def new_database_name() -> str:
    """Return a fresh ``fo_test_<hex>`` database name."""
    return f"{TEST_DB_PREFIX}{secrets.token_hex(6)}"


def create_database(admin_url: str, name: str | None = None) -> str:
    """Create an empty UTF8 database on the server of ``admin_url``; return its URL."""
    name = name or new_database_name()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(
                sql.Identifier(name)
            )
        )
    return with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """Drop database ``name`` if it exists, terminating its sessions first."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextlib.contextmanager
def throwaway_database(admin_url: str) -> Iterator[str]:
    """Yield the URL of a new empty database; drop it afterwards, whatever happened."""
    url = create_database(admin_url)
    try:
        yield url
    finally:
        drop_database(admin_url, database_of(url))


# --- private clusters ----------------------------------------------------------------------


def pg_bin_dir() -> Path:
    """Directory of initdb/pg_ctl: $TEST_PG_BINDIR, else the newest /usr/lib/postgresql/N/bin."""
    if env := os.environ.get("TEST_PG_BINDIR"):
        return Path(env)
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1,
    )
    if candidates:
        return candidates[-1]
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        return Path(pg_ctl).parent
    raise FileNotFoundError("no PostgreSQL server binaries found; set TEST_PG_BINDIR")


class ClusterError(RuntimeError):
    """A private cluster could not be created or started."""


@dataclass
class PrivateCluster:
    """A PostgreSQL cluster of our own in ``base_dir``, listening on 127.0.0.1:``port``."""

    base_dir: Path
    port: int
    superuser: str
    superuser_password: str
    bin_dir: Path
    os_user: str | None

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory (PGDATA)."""
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        """Directory of the Unix-domain socket."""
        return self.base_dir / "sock"

    @property
    def log_file(self) -> Path:
        """Server log written by pg_ctl."""
        return self.base_dir / "server.log"

    def url(self, user: str, password: str, dbname: str = "postgres") -> str:
        """A TCP URL for ``user`` on this cluster."""
        auth = f"{quote(user, safe='')}:{quote(password, safe='')}"
        return f"postgresql://{auth}@{LOOPBACK}:{self.port}/{quote(dbname)}"

    def superuser_url(self, dbname: str = "postgres") -> str:
        """A TCP URL for the cluster's superuser."""
        return self.url(self.superuser, self.superuser_password, dbname)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL binary as the cluster's OS user."""
        return run_as(self.os_user, [str(self.bin_dir / args[0]), *args[1:]], check=check)

    def log_tail(self, lines: int = 20) -> str:
        """Last lines of the server log (for error messages)."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def stop(self) -> None:
        """Stop the server at once (``pg_ctl stop -m immediate``) if it is running."""
        if (self.data_dir / "postmaster.pid").exists():
            self.run(
                "pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop", check=False
            )

    def create_role_and_database(self, role: str, password: str, dbname: str) -> str:
        """Create a LOGIN role with ``password`` owning a new database; return its URL."""
        with psycopg.connect(self.superuser_url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(dbname), sql.Identifier(role)
                )
            )
        return self.url(role, password, dbname)


def run_as(
    os_user: str | None, argv: list[str], *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as ``os_user`` (via runuser; only root may switch users)."""
    if os_user is not None:
        argv = ["runuser", "-u", os_user, "--", *argv]
    proc = subprocess.run(
        argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )
    if check and proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        raise ClusterError(f"{shlex.join(argv)} failed ({proc.returncode}): {output}")
    return proc


def _chown(path: Path, os_user: str | None) -> None:
    if os_user is not None:
        entry = pwd.getpwnam(os_user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


@contextlib.contextmanager
def private_cluster(
    *,
    auth: str = "scram-sha-256",
    settings: Mapping[str, str] | None = None,
    os_user: str = "postgres",
    start_attempts: int = 3,
) -> Iterator[PrivateCluster]:
    """initdb and start a private cluster on a free loopback port; stop and remove it after.

    ``auth`` is the initdb ``--auth`` method for local and host connections; ``settings``
    become ``-c name=value`` server options (e.g. WAL archiving). Runs as ``os_user`` when
    we are root.
    """
    user = os_user if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="fo-pg-"))
    cluster = PrivateCluster(
        base_dir=base,
        port=0,
        superuser="postgres",
        superuser_password=secrets.token_urlsafe(18),
        bin_dir=pg_bin_dir(),
        os_user=user,
    )
    try:
        _chown(base, user)
        cluster.socket_dir.mkdir()
        _chown(cluster.socket_dir, user)
        pwfile = base / "pwfile"
        pwfile.write_text(cluster.superuser_password + "\n")
        pwfile.chmod(0o600)
        _chown(pwfile, user)
        cluster.run(
            "initdb",
            "-D",
            str(cluster.data_dir),
            "-U",
            cluster.superuser,
            f"--auth={auth}",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
            "--no-instructions",
        )
        pwfile.unlink()
        _start(cluster, dict(settings or {}), start_attempts)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def _start(cluster: PrivateCluster, settings: dict[str, str], attempts: int) -> None:
    """Start the server on a free port, retrying when another process grabbed the port."""
    settings = {"listen_addresses": LOOPBACK, "fsync": "off", **settings}
    for attempt in range(1, attempts + 1):
        cluster.port = free_port()
        options = ["-p", str(cluster.port), "-k", str(cluster.socket_dir)]
        for name, value in settings.items():
            options += ["-c", f"{name}={value}"]
        proc = cluster.run(
            "pg_ctl",
            "-D",
            str(cluster.data_dir),
            "-l",
            str(cluster.log_file),
            "-w",
            "-t",
            "30",
            "-o",
            shlex.join(options),
            "start",
            check=False,
        )
        if proc.returncode == 0:
            return
        log = cluster.log_tail()
        if attempt < attempts and re.search(r"could not (bind|create listen)", log):
            continue
        raise ClusterError(f"pg_ctl start failed ({proc.returncode}): {proc.stderr.strip()}\n{log}")
