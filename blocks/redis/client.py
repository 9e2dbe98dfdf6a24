"""Talking to Redis: clients for one database, failures in one line, pipelined commands.

Plain functions on a `RedisServer`. Every message names the server and never its
password; a timeout or a dropped connection is a `TransientError`, so a task retries
it, while a wrong password or a refused command fails at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from blocks.redis import RedisServer
from blocks.tools import installed
from feedback_ops.errors import OpsError, TransientError


def explain_redis_error(exc: Exception, server: RedisServer) -> OpsError:
    """A one-line, secret-free reason for a Redis failure; transient ones are marked."""
    where = f"Redis at {server.display_name}"
    text = " ".join(str(exc).split())
    if isinstance(exc, redis.AuthenticationError) or "WRONGPASS" in text or "NOAUTH" in text:
        return OpsError(f"{where} rejected the login: wrong or missing password")
    if isinstance(exc, redis.TimeoutError):
        return TransientError(f"{where} did not answer in time: {text}")
    if isinstance(exc, redis.ConnectionError):
        if "refused" in text.lower():
            return OpsError(f"{where} is unreachable: connection refused")
        if "name or service not known" in text.lower():
            return OpsError(f"{where} is unreachable: unknown host {server.host!r}")
        return TransientError(f"{where}: connection lost: {text}")
    if "NOPERM" in text or "unknown command" in text.lower():
        return OpsError(f"{where} refused a command the snapshot needs: {text}")
    return OpsError(f"{where}: {text}")


@contextmanager
def redis_errors(server: RedisServer) -> Iterator[None]:
    """Turn redis-py's errors into one-line OpsErrors naming the server."""
    try:
        yield
    except redis.RedisError as exc:
        raise explain_redis_error(exc, server) from None


def client_for(server: RedisServer, db: int = 0) -> redis.Redis:
    """A redis-py client for one database (bytes in, bytes out).

    It tries each command once: redis-py would otherwise retry a refused login or a
    dropped connection three times with backoff, seconds spent before the task's own
    retry policy (transient failures only) even sees the failure.
    """
    return redis.Redis(**server.client_kwargs(db), retry=Retry(NoBackoff(), 0))


@contextmanager
def connected(server: RedisServer, db: int = 0) -> Iterator[redis.Redis]:
    """A client for one database, closed when the block ends."""
    client = client_for(server, db)
    try:
        yield client
    finally:
        client.close()


def keyspace(client: redis.Redis) -> dict[int, dict[str, int]]:
    """`INFO keyspace`: keys and expires of every database that has keys."""
    info: dict[str, Any] = client.info("keyspace")
    spaces = {}
    for name, stats in info.items():
        if name.startswith("db") and name[2:].isdigit():
            spaces[int(name[2:])] = {"keys": int(stats["keys"]), "expires": int(stats["expires"])}
    return dict(sorted(spaces.items()))


def server_facts(server: RedisServer) -> tuple[str, int]:
    """The server's version and `used_memory`, read before the snapshot starts."""
    with connected(server) as client, redis_errors(server):
        info: dict[str, Any] = client.info("server") | client.info("memory")
    return str(info["redis_version"]), int(info["used_memory"])


def pack(*args: bytes) -> bytes:
    """One command in the Redis protocol (RESP)."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def roundtrip(client: redis.Redis, packed: bytes, replies: int) -> list[Any]:
    """Send pre-packed commands on one connection and read their `replies` replies.

    A pipeline without redis-py's per-command bookkeeping, which costs more than Redis
    itself at a thousand commands a batch. An error reply raises (ResponseError), and
    the connection is then dropped rather than left with unread replies.
    """
    conn = client.connection_pool.get_connection()
    try:
        conn.send_packed_command([packed], check_health=False)  # type: ignore[no-untyped-call]
        return [conn.read_response(disable_decoding=True) for _ in range(replies)]
    except BaseException:
        conn.disconnect()  # type: ignore[no-untyped-call]
        raise
    finally:
        client.connection_pool.release(conn)


def find_redis_tool(name: str) -> str:
    """Path of `redis-cli` or `redis-check-rdb`.

    Raises:
        OpsError: the tool is not installed.
    """
    return installed(name, "redis-tools")
