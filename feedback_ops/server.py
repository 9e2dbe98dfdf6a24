"""The Prefect server that `up` and `run` start: a child that ends with its parent.

It runs in a session of its own, so a Ctrl-C in the terminal reaches the command first,
which then stops it; and the kernel sends it SIGTERM when the command dies in any other
way (`blocks.tools.ends_with_parent`), so a killed command leaves no server behind
holding the port and the database.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

SERVER_START_TIMEOUT = 120

# A one-off run's server does only what the run needs. The repossessor frees the lock
# of a run that died; the scheduler and the others belong to `up`, whose workers serve
# the runs they would create.
RUN_SERVER_SETTINGS = {
    "PREFECT_UI_ENABLED": "false",
    **{
        f"PREFECT_SERVER_SERVICES_{service}_ENABLED": "false"
        for service in (
            "SCHEDULER",
            "LATE_RUNS",
            "FOREMAN",
            "CANCELLATION_CLEANUP",
            "PAUSE_EXPIRATIONS",
            "TRIGGERS",
            "EVENT_LOGGER",
            "DB_VACUUM",
        )
    },
}


def api_answers(api_url: str) -> bool:
    """Whether a Prefect API answers its health check at `api_url` (…/api)."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def start_server(
    host: str, port: int, log_path: Path, settings: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `prefect server start` and wait until its API answers.

    Raises:
        RuntimeError: something already answers there, or the server exited or did not
            answer within SERVER_START_TIMEOUT; the message names the log.
    """
    # Imported here: `blocks` imports Prefect, which reads its settings once, and `up`
    # sets PREFECT_API_URL only after this module is imported.
    from blocks.tools import ends_with_parent

    api_url = f"http://{host}:{port}/api"
    if api_answers(api_url):
        raise RuntimeError(f"something already answers on {host}:{port}; stop it or use --port")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - the child writes to it until stopped
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(settings or {})},
        start_new_session=True,
        # Started from the main thread, which lives as long as the command.
        preexec_fn=ends_with_parent,  # noqa: PLW1509 - prebuilt, async-signal-safe
    )
    log.close()
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while not api_answers(api_url):
        if server.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:]
            raise RuntimeError(
                f"the Prefect server exited with {server.returncode}: "
                f"{tail[0] if tail else 'no output'} (log: {log_path})"
            )
        if time.monotonic() > deadline:
            stop_server(server)
            raise RuntimeError(
                f"the Prefect server did not answer within {SERVER_START_TIMEOUT} s "
                f"(log: {log_path})"
            )
        time.sleep(0.25)
    return server


def stop_server(server: subprocess.Popen[bytes]) -> None:
    """Stop the server's whole process group, politely first."""
    if server.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def server_for_one_run(state: Path, api_url: str) -> Iterator[None]:
    """A Prefect server for one `run` at `api_url` (a loopback URL with a free port), on
    the same database `up` uses; stopped afterwards."""
    port = int(api_url.removesuffix("/api").rsplit(":", 1)[1])
    server = start_server("127.0.0.1", port, state / "prefect-run-server.log", RUN_SERVER_SETTINGS)
    try:
        yield
    finally:
        stop_server(server)
