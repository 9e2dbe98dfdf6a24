"""Throwaway redis-server processes on free loopback ports, and data to fill them with.

`fill` writes a deterministic keyspace with every type Redis has (strings, hashes,
lists, sets, sorted sets, streams with consumer groups), in every encoding Redis picks
by size (int/embstr/raw strings, listpack and hashtable hashes, intset and hashtable
sets, listpack and skiplist sorted sets, quicklists), half of them with a TTL, across
several databases. `dumps` and `values` read a keyspace back for comparison.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from support.net import LOOPBACK, free_port, wait_until

TYPES = ("string", "hash", "list", "set", "zset", "stream")
DATABASES = (0, 3)
TTL_SECONDS = (3600, 86400)


@dataclass
class RedisProcess:
    """A running redis-server of a test's own."""

    port: int
    dir: Path
    args: list[str]
    password: str | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{LOOPBACK}:{self.port}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host=LOOPBACK, port=self.port, db=db, password=self.password)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(self._ready, timeout=30, what=f"redis-server on port {self.port}")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
        client = self.client()
        try:
            return not int(client.info("persistence")["loading"])
        except redis.ConnectionError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    @property
    def start_command(self) -> list[str]:
        """argv that starts this server in the background (for a self-hosted block)."""
        return [*self.args, "--daemonize", "yes", "--pidfile", str(self.dir / "redis.pid")]

    @property
    def stop_command(self) -> list[str]:
        """argv that stops it without saving (the restore puts its own file in place)."""
        auth = ["-a", self.password, "--no-auth-warning"] if self.password else []
        return ["redis-cli", "-p", str(self.port), *auth, "shutdown", "nosave"]


@contextmanager
def redis_server(*extra: str, password: str | None = None) -> Iterator[RedisProcess]:
    """A redis-server on a free loopback port with a data folder of its own."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (make test installs it)"
    with tempfile.TemporaryDirectory(prefix="fo-test-redis-") as tmp:
        port = free_port()
        args = [
            binary,
            "--port", str(port),
            "--bind", LOOPBACK,
            "--dir", tmp,
            "--dbfilename", "dump.rdb",
            "--save", "",
            "--appendonly", "no",
            "--databases", "16",
            # Replicas (redis-cli --rdb) get the RDB at once, not after the 5 s default.
            "--repl-diskless-sync-delay", "0",
            *(("--requirepass", password) if password else ()),
            *extra,
        ]  # fmt: skip
        server = RedisProcess(port, Path(tmp), args, password)
        server.start()
        try:
            yield server
        finally:
            server.stop()
            # A daemonized restart (self-hosted restore) is not our child: stop it too.
            subprocess.run(server.stop_command, capture_output=True, check=False)


def fill(server: RedisProcess, keys: int, seed: int = 7) -> dict[int, int]:
    """Write `keys` keys spread over DATABASES and every type; returns keys per db."""
    rng = random.Random(seed)
    per_db: dict[int, int] = {}
    for index, db in enumerate(DATABASES):
        share = keys // len(DATABASES) + (1 if index < keys % len(DATABASES) else 0)
        client = server.client(db)
        pipe = client.pipeline(transaction=False)
        for n in range(share):
            _write(pipe, f"{TYPES[n % len(TYPES)]}:{db}:{n:06d}", TYPES[n % len(TYPES)], n, rng)
            if n % 2 == 1:
                pipe.expire(f"{TYPES[n % len(TYPES)]}:{db}:{n:06d}", rng.choice(TTL_SECONDS))
            if n % 2000 == 1999:
                pipe.execute()
        pipe.execute()
        client.close()
        per_db[db] = share
    return per_db


def _write(pipe: Any, key: str, kind: str, n: int, rng: random.Random) -> None:
    big = n % 997 == 0  # a few large values push Redis into its big encodings
    text = "å ä ö \x00 \n ✓ " + "x" * rng.randint(0, 60)
    if kind == "string":
        value: Any = (n, text, text * 100, bytes(range(256)))[n % 4]
        pipe.set(key, value)
    elif kind == "hash":
        fields = 300 if big else rng.randint(1, 8)
        pipe.hset(key, mapping={f"fält{i}": f"{text}{i}" for i in range(fields)})
    elif kind == "list":
        items = 2000 if big else rng.randint(1, 10)
        pipe.rpush(key, *[f"{i}:{text}" for i in range(items)])
    elif kind == "set":
        items = 600 if big else rng.randint(1, 10)
        members = list(range(items)) if n % 3 == 0 else [f"m{i}{text}" for i in range(items)]
        pipe.sadd(key, *members)
    elif kind == "zset":
        items = 300 if big else rng.randint(1, 10)
        pipe.zadd(key, {f"z{i}-{text}": rng.uniform(-1e6, 1e6) for i in range(items)})
    else:
        for i in range(3 if not big else 200):
            pipe.xadd(key, {"event": f"e{i}", "payload": text}, id=f"{1000 + n}-{i + 1}")
        if n % 5 == 0:
            pipe.xgroup_create(key, "dashboard", id="0")


def dumps(server: RedisProcess) -> dict[tuple[int, bytes], tuple[bytes, int]]:
    """Every key of every database as (DUMP payload, absolute expiry ms or -1)."""
    found: dict[tuple[int, bytes], tuple[bytes, int]] = {}
    for name in server.client().info("keyspace"):
        db = int(name[2:])
        client = server.client(db)
        keys = list(client.scan_iter(count=1000))
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            pipe = client.pipeline(transaction=False)
            for key in batch:
                pipe.dump(key)
                pipe.pexpiretime(key)
            replies = pipe.execute()
            for key, payload, expiry in zip(batch, replies[::2], replies[1::2], strict=True):
                found[(db, key)] = (payload, expiry)
        client.close()
    return found


def values(server: RedisProcess, keys: list[tuple[int, bytes]]) -> dict[Any, tuple[str, Any]]:
    """(type, value) of each key, read with the type's own commands, order-free."""
    found: dict[Any, tuple[str, Any]] = {}
    for db in {db for db, _key in keys}:
        client = server.client(db)
        mine = [key for d, key in keys if d == db]
        pipe = client.pipeline(transaction=False)
        for key in mine:
            pipe.type(key)
        kinds = [kind.decode() for kind in pipe.execute()]
        pipe = client.pipeline(transaction=False)
        for key, kind in zip(mine, kinds, strict=True):
            _read(pipe, key, kind)
        replies = iter(pipe.execute())
        for key, kind in zip(mine, kinds, strict=True):
            value = [next(replies) for _ in range(2 if kind == "stream" else 1)]
            found[(db, key)] = (kind, _plain(kind, value))
        client.close()
    return found


def _read(pipe: Any, key: bytes, kind: str) -> None:
    if kind == "string":
        pipe.get(key)
    elif kind == "hash":
        pipe.hgetall(key)
    elif kind == "list":
        pipe.lrange(key, 0, -1)
    elif kind == "set":
        pipe.smembers(key)
    elif kind == "zset":
        pipe.zrange(key, 0, -1, withscores=True)
    elif kind == "stream":
        pipe.xrange(key)
        pipe.xinfo_groups(key)
    else:
        raise AssertionError(f"unexpected type {kind}")


def _plain(kind: str, value: list[Any]) -> Any:
    if kind == "hash":
        return sorted(value[0].items())
    if kind == "set":
        return sorted(value[0])
    if kind == "stream":
        return value[0], value[1]
    return value[0]
