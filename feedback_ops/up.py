"""`feedback-ops up`: the Prefect server with its UI, the blocks, and every deployment.

The server runs as a child process in its own session, so Ctrl-C reaches this process
first: serving stops (leaving the deployments' schedules active for the next start),
then the server is stopped, and nothing is left running. Stopping does not depend on
being able to print (`make up | tee up.log` loses its reader with the same Ctrl-C), and
the server ends with this process however it ends, even by SIGKILL.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

SERVER_START_TIMEOUT = 120
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def api_answers(api_url: str) -> bool:
    """Whether a Prefect API answers its health check at `api_url` (…/api)."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def start_server(host: str, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """Start `prefect server start` and wait until its API answers."""
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
        start_new_session=True,
        preexec_fn=_end_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
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
            raise RuntimeError(f"the Prefect server did not answer within {SERVER_START_TIMEOUT} s")
        time.sleep(0.25)
    return server


def _end_with_parent() -> None:
    """In the server's process before it starts: have the kernel send it SIGTERM when
    `up` dies, so a killed `up` leaves no server holding the port and the database."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


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


def up(host: str, port: int) -> int:
    """Run everything until interrupted; returns the exit status."""
    # With stdout piped into `tee`, Ctrl-C ends the reader too. A write after that must
    # fail as BrokenPipeError, which the stop below outlives, instead of SIGPIPE killing
    # this process before it stops the server.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    state = Path(os.environ["FEEDBACK_OPS_STATE_DIR"])
    external = os.environ.get("PREFECT_API_URL")
    server = None
    if not external:
        os.environ["PREFECT_API_URL"] = f"http://{host}:{port}/api"
        os.environ.setdefault("PREFECT_UI_API_URL", os.environ["PREFECT_API_URL"])
        try:
            server = start_server(host, port, state / "prefect-server.log")
        except RuntimeError as exc:
            print(f"feedback-ops up: {exc}", file=sys.stderr)
            return 1
    try:
        from prefect import serve

        from deployments import all_deployments
        from feedback_ops.config import sync_blocks
        from feedback_ops.errors import OpsError

        try:
            sync_blocks()
        except OpsError as exc:
            print(f"feedback-ops up: {exc}", file=sys.stderr)
            return 2
        specs = all_deployments()
        ui = external or f"http://{host}:{port}"
        _say(f"feedback-ops: UI at {ui.removesuffix('/api')}, serving {len(specs)} deployments")
        serve(
            *(spec.to_runner() for spec in specs),
            pause_on_shutdown=False,
            print_starting_message=False,
        )
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        _stdout_gone()
    finally:
        if server is not None:
            _say("feedback-ops: stopping the Prefect server")
            stop_server(server)
    return 0


def _say(line: str) -> None:
    """Print a line for the operator; with nobody reading any more, print nothing."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        _stdout_gone()


def _stdout_gone() -> None:
    # Later writes (and the flush at exit) go nowhere instead of failing again.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
