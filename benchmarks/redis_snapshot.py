"""Benchmark: the redis-snapshot flow (rdb and logical) against raw `redis-cli --rdb FILE`.

Starts a throwaway redis-server on a free loopback port, fills it with --keys keys of
every type (strings, hashes, lists, sets, sorted sets, streams; half of each with a
TTL; a few large ones for Redis' big encodings), then alternates, --rounds times: one
run of the `redis-snapshot` flow with method `rdb`, one with method `logical` (both to
a local store), and one raw `redis-cli -p PORT --rdb FILE`. Prints the medians, the
ratios rdb/raw and logical/raw, the peak RSS of the process that ran each method's flow
and the snapshot sizes.

    .venv/bin/python benchmarks/redis_snapshot.py --keys 1000000 --rounds 3

The server runs with `--repl-diskless-sync-delay 0`, so the replication stream that
both the flow's `rdb` method and raw `redis-cli --rdb` read starts at once rather than
after Redis' default 5 s wait for more replicas, which would otherwise dominate both
timings. It also runs with `--save ""` and `--appendonly no`: nothing else forks or
writes beside the snapshots being measured.

Each method's flow runs in a worker process of its own under a throwaway Prefect API
(started before timing), so the flow's own time and memory are measured, not the API
server's start-up, and each method's peak RSS is its own. The ops catalog lives in a
throwaway PostgreSQL database made through --admin-url and dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _platform_data import drop_database  # noqa: E402
from _prefect_api import prefect_api, save_blocks  # noqa: E402

DEFAULT_ADMIN_URL = "postgresql://postgres:postgres@127.0.0.1:5432/postgres"
LOOPBACK = "127.0.0.1"
METHODS = ("rdb", "logical")
# Weighted like a cache, mostly strings and hashes, yet with every core type Redis has.
CYCLE = ("string", "hash", "string", "list", "string", "set", "hash", "zset", "string", "stream")
DATABASES = (0, 1)
BATCH = 5000  # keys per write to redis-cli --pipe
TTL_SECONDS = (3600, 86400)


def worker(method: str, redis_url: str, ops_url: str, store: Path) -> None:
    """Run the flow with `method` once per line on stdin; answer each with a JSON line."""
    from prefect.logging import disable_run_logger

    from flows.redis_snapshot import redis_snapshot

    env = {
        "REDIS_URL": redis_url,
        "REDIS_SNAPSHOT_METHOD": method,
        "BACKUP_URL": f"file://{store}",
        "DATABASE_URL": ops_url,
    }
    with prefect_api(), disable_run_logger():
        names = save_blocks(env)
        print(json.dumps({"ready": True}), flush=True)
        for _line in sys.stdin:
            shutil.rmtree(store, ignore_errors=True)
            start = time.perf_counter()
            result = redis_snapshot(
                redis_block=names["platform-redis"],
                storage_block=names["backup-storage"],
                ops_database_block=names["ops-postgres"],
                alert_channels_block=names["alert-channels"],
            )
            seconds = time.perf_counter() - start
            # The run's own peak, not its children's: redis-cli and redis-check-rdb
            # (rdb) are separate processes, as pg_dump is in the backup benchmark.
            peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            assert result.method == method, result
            print(
                json.dumps(
                    {
                        "seconds": seconds,
                        "size": result.size,
                        "keys": result.total_keys,
                        "peak_rss_kib": peak_kib,
                    }
                ),
                flush=True,
            )


def free_port() -> int:
    """A TCP port on the loopback address that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@contextmanager
def redis_server(data_dir: Path) -> Iterator[int]:
    """A redis-server of the benchmark's own on a free loopback port; yields the port."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (Debian package redis-server)")
    data_dir.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port", str(port),
            "--bind", LOOPBACK,
            "--dir", str(data_dir),
            "--save", "",
            "--appendonly", "no",
            # Both the flow's rdb method and raw redis-cli --rdb get the RDB at once,
            # not after the 5 s default wait for further replicas.
            "--repl-diskless-sync-delay", "0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {proc.returncode}")
            try:
                with redis.Redis(host=LOOPBACK, port=port) as client:
                    client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def fill(cli: str, port: int, keys: int) -> None:
    """Write `keys` deterministic keys, spread over DATABASES and every type.

    Key n is of type CYCLE[n % len(CYCLE)]; half of each type's keys get a TTL (by
    n // len(CYCLE), so no type is left out); every 997th key is large, pushing Redis
    into its big encodings (hashtable hashes and sets, skiplists, long quicklists) as a
    real cache has a few of. The commands go through `redis-cli --pipe`, Redis' own
    mass-insertion pipelining: three times faster than redis-py parsing every reply
    in Python, which matters at a million keys.
    """
    proc = subprocess.Popen(
        [cli, "-h", LOOPBACK, "-p", str(port), "--pipe"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdin and proc.stdout
    try:
        for index, db in enumerate(DATABASES):
            share = keys // len(DATABASES) + (1 if index < keys % len(DATABASES) else 0)
            batch = [_resp(("SELECT", db))]
            for n in range(share):
                batch += [_resp(command) for command in _commands(db, n)]
                if n % BATCH == BATCH - 1:
                    proc.stdin.write(b"".join(batch))
                    batch = []
            proc.stdin.write(b"".join(batch))
    finally:
        proc.stdin.close()
    # --pipe reports only at the end, so its output cannot fill the pipe before this.
    report = proc.stdout.read().decode(errors="replace")
    if proc.wait() != 0 or "errors: 0," not in report:
        raise RuntimeError(f"redis-cli --pipe failed: {report.strip()[-500:]}")


def _resp(command: tuple[Any, ...]) -> bytes:
    """One command in the Redis protocol (RESP), as redis-cli --pipe reads it."""
    out = [b"*%d\r\n" % len(command)]
    for arg in command:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


def _commands(db: int, n: int) -> list[tuple[Any, ...]]:
    """The commands that write key number `n` of database `db`."""
    kind = CYCLE[n % len(CYCLE)]
    turn = n // len(CYCLE)
    key = f"{kind}:{db}:{n:07d}"
    ttl = TTL_SECONDS[turn % 2] if turn // 2 % 2 else None
    big = n % 997 == 0
    text = f"feedback {n} å ä ö ✓ " + "x" * (n % 61)
    commands: list[tuple[Any, ...]]
    if kind == "string":
        value: Any = (n, text, text * 4, bytes(range(n % 256)))[(n + turn) % 4]
        return [("SET", key, value, *(("EX", ttl) if ttl else ()))]
    if kind == "hash":
        fields = 300 if big else 1 + turn % 8
        pairs = [part for i in range(fields) for part in (f"fält{i}", f"{text}{i}")]
        commands = [("HSET", key, *pairs)]
    elif kind == "list":
        items = 2000 if big else 1 + turn % 10
        commands = [("RPUSH", key, *[f"{i}:{text}" for i in range(items)])]
    elif kind == "set":
        items = 600 if big else 1 + turn % 10
        # Integer members make an intset, the others a listpack or hashtable.
        members = range(items) if turn % 3 == 0 else [f"m{i}{text}" for i in range(items)]
        commands = [("SADD", key, *members)]
    elif kind == "zset":
        items = 300 if big else 1 + turn % 10
        scored = [
            part
            for i in range(items)
            for part in ((n * 7919 + i * 104729) % 2_000_001 / 2 - 5e5, f"z{i}-{text}")
        ]
        commands = [("ZADD", key, *scored)]
    else:
        commands = [
            ("XADD", key, f"{1000 + n}-{i + 1}", "event", f"e{i}", "payload", text)
            for i in range(200 if big else 2)
        ]
        if turn % 5 == 0:
            commands.append(("XGROUP", "CREATE", key, "dashboard", "0"))
    if ttl:
        commands.append(("EXPIRE", key, ttl))
    return commands


def raw_redis_cli(cli: str, port: int, target: Path) -> float:
    """Time `redis-cli -p PORT --rdb FILE`, the same binary the flow's rdb method runs."""
    target.unlink(missing_ok=True)
    start = time.perf_counter()
    subprocess.run(
        [cli, "-h", LOOPBACK, "-p", str(port), "--rdb", str(target)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> int:
    """Parse the options; run a worker, or the whole benchmark with its ops database."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--admin-url", default=os.environ.get("TEST_DATABASE_URL", DEFAULT_ADMIN_URL)
    )
    parser.add_argument(
        "--worker",
        nargs=4,
        metavar=("METHOD", "REDIS_URL", "OPS_URL", "STORE"),
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args()
    if args.worker:
        method, redis_url, ops_url, store = args.worker
        worker(method, redis_url, ops_url, Path(store))
        return 0

    name = f"fo_bench_redis_ops_{os.getpid()}"
    ops_url = args.admin_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(args.admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        return measure(args, ops_url)
    finally:
        drop_database(args.admin_url, ops_url)


def start_worker(method: str, port: int, ops_url: str, tmp: str) -> subprocess.Popen[str]:
    """Start the worker that runs the flow with `method`, with a Prefect home of its own."""
    env = os.environ | {
        "PREFECT_HOME": f"{tmp}/prefect-{method}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    return subprocess.Popen(
        [sys.executable, __file__, "--worker", method, f"redis://{LOOPBACK}:{port}", ops_url,
         f"{tmp}/store"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip


def ask(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """Have a worker run the flow once; its answer."""
    assert proc.stdin and proc.stdout
    proc.stdin.write("run\n")
    proc.stdin.flush()
    answer: dict[str, Any] = json.loads(proc.stdout.readline())
    return answer


def measure(args: argparse.Namespace, ops_url: str) -> int:
    """Fill a Redis, then alternate both flow methods and raw runs; print the comparison."""
    from blocks.redis.snapshot import find_redis_tool

    cli = find_redis_tool("redis-cli")
    with (
        tempfile.TemporaryDirectory(prefix="fo-bench-", dir=os.environ.get("BENCH_DIR")) as tmp,
        redis_server(Path(tmp) / "redis") as port,
    ):
        print(f"filling redis-server on port {port} with {args.keys} keys …", flush=True)
        start = time.perf_counter()
        fill(cli, port, args.keys)
        with redis.Redis(host=LOOPBACK, port=port) as client:
            used_memory = int(client.info("memory")["used_memory"])
            written = sum(int(db["keys"]) for db in client.info("keyspace").values())
        if written != args.keys:
            raise RuntimeError(f"redis-server holds {written} keys, not {args.keys}")
        print(
            f"redis: {args.keys} keys in {time.perf_counter() - start:.1f} s, "
            f"used_memory {used_memory / 1e6:.0f} MB",
            flush=True,
        )
        # Both workers start (and their Prefect APIs come up) side by side, before timing.
        workers = {method: start_worker(method, port, ops_url, tmp) for method in METHODS}
        try:
            for proc in workers.values():
                assert proc.stdout
                assert json.loads(proc.stdout.readline()) == {"ready": True}
            times: dict[str, list[float]] = {name: [] for name in (*METHODS, "raw")}
            peak_kib = dict.fromkeys(METHODS, 0)
            sizes = dict.fromkeys((*METHODS, "raw"), 0)
            for round_no in range(1, args.rounds + 1):
                for method, proc in workers.items():
                    answer = ask(proc)
                    if answer["keys"] != args.keys:
                        raise RuntimeError(f"{method}: {answer['keys']} keys, not {args.keys}")
                    times[method].append(answer["seconds"])
                    peak_kib[method] = max(peak_kib[method], answer["peak_rss_kib"])
                    sizes[method] = answer["size"]
                raw_file = Path(tmp) / "raw.rdb"
                times["raw"].append(raw_redis_cli(cli, port, raw_file))
                sizes["raw"] = raw_file.stat().st_size
                raw_file.unlink()
                print(
                    f"round {round_no}: flow rdb {times['rdb'][-1]:.2f} s, "
                    f"flow logical {times['logical'][-1]:.2f} s, "
                    f"raw redis-cli --rdb {times['raw'][-1]:.2f} s "
                    f"(rdb {sizes['rdb'] / 1e6:.0f} MB, logical {sizes['logical'] / 1e6:.0f} MB)",
                    flush=True,
                )
        finally:
            for proc in workers.values():
                if proc.stdin:
                    proc.stdin.close()
            for proc in workers.values():
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"rdb median:       {medians['rdb']:.2f} s")
    print(f"logical median:   {medians['logical']:.2f} s")
    print(f"raw redis-cli --rdb median: {medians['raw']:.2f} s")
    print(f"ratio rdb/raw:    {medians['rdb'] / medians['raw']:.3f}")
    print(f"ratio logical/raw: {medians['logical'] / medians['raw']:.3f}")
    print(f"rdb peak RSS:     {peak_kib['rdb'] / 1024:.0f} MB")
    print(f"logical peak RSS: {peak_kib['logical'] / 1024:.0f} MB")
    print(
        f"snapshot sizes (rdb, logical, raw): "
        f"{sizes['rdb']} / {sizes['logical']} / {sizes['raw']} bytes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
