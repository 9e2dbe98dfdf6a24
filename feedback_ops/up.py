"""`feedback-ops up`: the Prefect server with its UI, the blocks, and every deployment.

Ctrl-C reaches this process first (the server runs in a session of its own, see
`feedback_ops.server`): serving stops, leaving the deployments' schedules active for the
next start, then the server is stopped, and nothing is left running. Stopping does not
depend on being able to print (`make up | tee up.log` loses its reader with the same
Ctrl-C), and the server ends with this process however it ends, even by SIGKILL.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from feedback_ops.server import start_server, stop_server


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
