"""PostgreSQL: the block (where a database is, how to log in) and its clients.

`client` opens connections and explains libpq's failures in one line, `dump` streams
`pg_dump` into a store, `restore` runs `pg_restore` into scratch or named databases.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, SecretStr

from feedback_ops.errors import ConfigError


class PostgresDatabase(Block):
    """A PostgreSQL database: the platform's own, or the ops catalog.

    The password is a secret field: it reaches libpq through `PGPASSWORD` in a
    child's environment or a connection argument, never a command line or a log.

    Example:
        Load the platform database saved by `feedback-ops up`:
        ```python
        from blocks import PostgresDatabase

        db = PostgresDatabase.load("BLOCK_NAME")
        print(db.display_name)
        ```
    """

    _block_type_name: ClassVar[str] = "Feedback Ops PostgreSQL"
    _block_type_slug: ClassVar[str] = "feedback-ops-postgres"
    _description: ClassVar[str] = "A PostgreSQL database of the AI Feedback Platform."
    _documentation_url: ClassVar[HttpUrl] = HttpUrl(
        "https://www.postgresql.org/docs/current/libpq-connect.html"
    )

    host: str = Field(default="127.0.0.1", description="Host name or address.")
    port: int = Field(default=5432, ge=1, le=65535, description="TCP port.")
    database: str = Field(default="postgres", description="Database name.")
    username: str = Field(default="postgres", description="Role to log in as.")
    password: SecretStr | None = Field(default=None, description="The role's password.")
    sslmode: str | None = Field(default=None, description="libpq sslmode, e.g. require.")
    connect_timeout: int = Field(default=10, ge=1, description="Seconds to wait for a login.")

    @classmethod
    def from_url(cls, url: str, *, variable: str = "DATABASE_URL") -> PostgresDatabase:
        """Build the block from a `postgresql://user:password@host:port/db` URL.

        Raises:
            ConfigError: the URL is not a PostgreSQL URL; the message names `variable`
                and never repeats the password.
        """
        parts = urlsplit(url.strip())
        if parts.scheme not in ("postgresql", "postgres", "postgresql+psycopg"):
            raise ConfigError(
                f"{variable} must be a postgresql://user:password@host:port/database URL, "
                f"got scheme {parts.scheme if '://' in url else '(none)'!r}"
            )
        try:
            port = parts.port or 5432
        except ValueError:
            # The parser's own message could quote part of a password that holds an
            # unencoded / # or ?: name the likely cause instead.
            raise ConfigError(
                f"{variable} has an invalid port (a password with / # ? @ must be percent-encoded)"
            ) from None
        query = parse_qs(parts.query)
        timeout = query.get("connect_timeout", [None])[0]
        if timeout is not None and not (timeout.isdigit() and int(timeout) >= 1):
            raise ConfigError(f"{variable}: connect_timeout must be a whole number of seconds")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=port,
            database=unquote(parts.path.lstrip("/")) or "postgres",
            username=unquote(parts.username) if parts.username else "postgres",
            password=SecretStr(unquote(parts.password)) if parts.password else None,
            sslmode=query.get("sslmode", [None])[0],
            **({"connect_timeout": int(timeout)} if timeout is not None else {}),
        )

    @property
    def display_name(self) -> str:
        """`user@host:port/database`, safe to print."""
        return f"{self.username}@{self.host}:{self.port}/{self.database}"

    def libpq_env(self) -> dict[str, str]:
        """Environment variables that point libpq tools (pg_dump, psql) at this database."""
        env = {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGDATABASE": self.database,
            "PGUSER": self.username,
            "PGCONNECT_TIMEOUT": str(self.connect_timeout),
            "PGAPPNAME": "feedback-ops",
        }
        if self.password is not None:
            env["PGPASSWORD"] = self.password.get_secret_value()
        if self.sslmode:
            env["PGSSLMODE"] = self.sslmode
        return env

    def connect_kwargs(self, database: str | None = None) -> dict[str, Any]:
        """Keyword arguments for `psycopg.connect`, optionally for another database."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "dbname": database or self.database,
            "user": self.username,
            "connect_timeout": self.connect_timeout,
            "application_name": "feedback-ops",
            # A peer that vanishes mid-query is noticed within about a minute, not never.
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }
        if self.password is not None:
            kwargs["password"] = self.password.get_secret_value()
        if self.sslmode:
            kwargs["sslmode"] = self.sslmode
        return kwargs

    def with_database(self, database: str) -> PostgresDatabase:
        """The same server and login, another database."""
        return self.model_copy(update={"database": database})
