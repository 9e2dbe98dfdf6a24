"""The production stack of docker/compose.yaml without Docker: a Prefect server on
PostgreSQL with its messaging in Redis (prefect-redis), two API processes, the
background services in a process of their own, and process workers per work pool.

Every process runs in a session of its own with its output in a log file, so a test
can stop one (a worker, to fail over) and read what each did.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from support.net import LOOPBACK, free_port, wait_until

PREFECT = [sys.executable, "-m", "prefect"]
STARTUP_SECONDS = 120
AUTH = "ops-admin:stack-secret"
"""The `user:password` the stack's API asks for, as compose's PREFECT_AUTH_STRING."""


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as answer:
        return bool(answer.status == 200)


@dataclass
class StackProcess:
    """One process of the stack, with its log."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """Stop its whole process group: a worker's flow runs are its children."""
        if self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def output(self) -> str:
        """What it logged so far."""
        return self.log.read_text(errors="replace")


@dataclass
class PrefectStack:
    """A running stack: the APIs' URLs, and each process by name."""

    folder: Path
    server_env: dict[str, str]
    apis: list[str] = field(default_factory=list)
    processes: dict[str, StackProcess] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> StackProcess:
        """Start one process of the stack, its output in `<folder>/<name>.log`."""
        log = self.folder / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.folder,
                start_new_session=True,
            )
        process = StackProcess(name, proc, log)
        self.processes[name] = process
        return process

    def start_api(self, name: str, *, migrate: bool) -> str:
        """An API process without the services (`prefect server start --no-services`)."""
        port = free_port()
        env = self.server_env | {
            "PREFECT_API_DATABASE_MIGRATE_ON_START": "true" if migrate else "false",
            "PREFECT_UI_ENABLED": "false",
        }
        argv = [*PREFECT, "server", "start", "--no-services", "--host", LOOPBACK]
        process = self.start(name, [*argv, "--port", str(port)], env)
        api = f"http://{LOOPBACK}:{port}/api"
        self._wait(process, f"{api}/health")
        self.apis.append(api)
        return api

    def start_worker(self, name: str, pool: str, api: str) -> StackProcess:
        """A process worker of `pool` that polls every second and heartbeats every 5 s,
        so the server sees it go within about 20 seconds."""
        env = self.client_env(api) | {
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_HEARTBEAT_SECONDS": "5",
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
        }
        argv = [*PREFECT, "worker", "start", "--pool", pool, "--type", "process", "--name", name]
        return self.start(name, argv, env)

    def client_env(self, api: str) -> dict[str, str]:
        """The environment of a process that talks to the stack through `api`."""
        home = self.folder / "client-home"
        return {
            k: v
            for k, v in self.server_env.items()
            if not k.startswith(("PREFECT_SERVER_", "PREFECT_MESSAGING", "PREFECT_REDIS"))
        } | {"PREFECT_API_URL": api, "PREFECT_API_AUTH_STRING": AUTH, "PREFECT_HOME": str(home)}

    def _wait(self, process: StackProcess, url: str) -> None:
        def ready() -> bool:
            if process.proc.poll() is not None:
                raise RuntimeError(
                    f"{process.name} exited with {process.proc.returncode}:\n"
                    f"{process.output()[-3000:]}"
                )
            return _answers(url)

        wait_until(ready, timeout=STARTUP_SECONDS, interval=0.25, what=process.name)

    def stop(self) -> None:
        """Stop every process, workers first."""
        for process in reversed(list(self.processes.values())):
            process.stop()


@contextmanager
def prefect_stack(folder: Path, database_url: str, redis_url: str) -> Iterator[PrefectStack]:
    """Two API processes and the services process on `database_url` (PostgreSQL) with
    messaging, event ordering and concurrency leases in the Redis at `redis_url`; the
    API asks every client but a health probe for the `AUTH` credentials."""
    database = database_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    server_env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | {
        "PREFECT_HOME": str(folder / "server-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": database,
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_REDIS_MESSAGING_URL": redis_url,
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_SERVER_DOCKET_URL": f"{redis_url}/1",
        "PREFECT_SERVER_API_AUTH_STRING": AUTH,
        # A worker that stops heartbeating is offline after 3 × its 5 s heartbeat (2 s let
        # a worker of a busy machine seem gone, and its pool flip back to not-ready); the
        # foreman looks every second, so its pool goes not-ready within 20 seconds.
        "PREFECT_SERVER_SERVICES_FOREMAN_LOOP_SECONDS": "1",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
        "PREFECT_SERVER_SERVICES_LATE_RUNS_LOOP_SECONDS": "5",
    }
    stack = PrefectStack(folder, server_env)
    try:
        stack.start_api("api-1", migrate=True)
        stack.start_api("api-2", migrate=False)
        stack.start("services", [*PREFECT, "server", "services", "start"], server_env)
        yield stack
    finally:
        stack.stop()
