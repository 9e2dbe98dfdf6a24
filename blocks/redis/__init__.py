"""Redis: the block (where the platform's Redis is, how to log in, how to snapshot it)
and its clients.

`client` talks to a server, `records` is the logical snapshot format, `snapshot`
streams either kind of snapshot into a store, `restore` loads one into a server.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal
from urllib.parse import unquote, urlsplit

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, SecretStr

from feedback_ops.errors import ConfigError


class RedisServer(Block):
    """A Redis server of the AI Feedback Platform: the cache (Redis Cloud in production).

    `snapshot_method` picks how `redis-snapshot` reads it. `rdb` takes the RDB file over
    the replication stream (`redis-cli --rdb`), which managed Redis (Redis Cloud,
    ElastiCache) refuses; `logical` reads every key with SCAN, DUMP and PTTL, which
    works on any Redis. The password reaches `redis-cli` through `REDISCLI_AUTH` in the
    child's environment, never its command line.

    A self-hosted server names its data directory and the commands that stop and start
    it: `redis-restore` of an RDB snapshot then follows the runbook (stop, copy
    `dump.rdb` into the data directory, start). Without them an RDB snapshot is loaded
    into a temporary local `redis-server` and copied into the target with DUMP/RESTORE.

    Example:
        Load the Redis saved by `feedback-ops up`:
        ```python
        from blocks.redis import RedisServer

        redis = RedisServer.load("BLOCK_NAME")
        print(redis.display_name)
        ```
    """

    _block_type_name: ClassVar[str] = "Feedback Ops Redis"
    _block_type_slug: ClassVar[str] = "feedback-ops-redis"
    _description: ClassVar[str] = "A Redis server of the AI Feedback Platform."
    _documentation_url: ClassVar[HttpUrl] = HttpUrl(
        "https://redis.io/docs/latest/operate/oss_and_stack/management/persistence/"
    )

    host: str = Field(default="127.0.0.1", description="Host name or address.")
    port: int = Field(default=6379, ge=1, le=65535, description="TCP port.")
    username: str | None = Field(default=None, description="ACL user (Redis 6+), if any.")
    password: SecretStr | None = Field(default=None, description="Password (AUTH).")
    tls: bool = Field(default=False, description="Connect with TLS (rediss://).")
    snapshot_method: Literal["rdb", "logical"] = Field(
        default="logical",
        description="rdb: redis-cli --rdb (self-hosted); logical: SCAN+DUMP (any Redis).",
    )
    data_dir: str | None = Field(
        default=None, description="Self-hosted only: the server's data directory, as seen here."
    )
    rdb_filename: str = Field(default="dump.rdb", description="The server's dbfilename.")
    stop_command: list[str] = Field(
        default_factory=list,
        description="Self-hosted only: argv that stops the server, e.g. docker stop redis.",
    )
    start_command: list[str] = Field(
        default_factory=list,
        description="Self-hosted only: argv that starts the server, e.g. docker start redis.",
    )
    unix_socket_path: str | None = Field(
        default=None, description="Connect through this Unix socket instead of host:port."
    )
    socket_timeout: float = Field(default=30.0, gt=0, description="Seconds to wait per reply.")

    @classmethod
    def from_url(cls, url: str, *, variable: str = "REDIS_URL") -> RedisServer:
        """Build the block from `redis://[user:password@]host:port` (or `rediss://`).

        Raises:
            ConfigError: not a Redis URL; the message names `variable` and never
                repeats the password.
        """
        parts = urlsplit(url.strip())
        if parts.scheme not in ("redis", "rediss"):
            raise ConfigError(
                f"{variable} must be a redis://[user:password@]host:port URL, "
                f"got scheme {parts.scheme if '://' in url else '(none)'!r}"
            )
        try:
            port = parts.port or 6379
        except ValueError:
            # The parser's own message could quote part of a password that holds an
            # unencoded / # or ?: name the likely cause instead.
            raise ConfigError(
                f"{variable} has an invalid port (a password with / # ? @ must be percent-encoded)"
            ) from None
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=SecretStr(unquote(parts.password)) if parts.password else None,
            tls=parts.scheme == "rediss",
        )

    @property
    def display_name(self) -> str:
        """`redis://host:port`, safe to print."""
        if self.unix_socket_path:
            return f"unix://{self.unix_socket_path}"
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}"

    @property
    def self_hosted(self) -> bool:
        """Whether the runbook's stop/copy/start restore is possible here."""
        return bool(self.data_dir and self.stop_command and self.start_command)

    def client_kwargs(self, db: int = 0) -> dict[str, Any]:
        """Keyword arguments for `redis.Redis`, for database `db`."""
        kwargs: dict[str, Any] = {
            "db": db,
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": 10,
            "client_name": "feedback-ops",
        }
        if self.unix_socket_path:
            kwargs["unix_socket_path"] = self.unix_socket_path
        else:
            kwargs |= {"host": self.host, "port": self.port, "ssl": self.tls}
        if self.username:
            kwargs["username"] = self.username
        if self.password is not None:
            kwargs["password"] = self.password.get_secret_value()
        return kwargs

    def cli_args(self) -> list[str]:
        """`redis-cli` arguments that reach this server (no secret among them)."""
        if self.unix_socket_path:
            args = ["-s", self.unix_socket_path]
        else:
            args = ["-h", self.host, "-p", str(self.port)]
        if self.username:
            args += ["--user", self.username]
        if self.tls:
            args.append("--tls")
        return args

    def cli_env(self) -> dict[str, str]:
        """Environment for `redis-cli`: the password, if any, as REDISCLI_AUTH."""
        return {"REDISCLI_AUTH": self.password.get_secret_value()} if self.password else {}
