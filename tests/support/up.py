"""`feedback-ops up` on a free port, and calls to its Prefect API, as the end-to-end
tests drive them."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import IO, Any

import httpx

from support.cli import FEEDBACK_OPS
from support.net import free_port, port_accepts, wait_until


def api_call(client: httpx.Client, method: str, path: str, body: Any = None) -> Any:
    """One API call, retried like Prefect's own client does while SQLite is busy (503)."""
    deadline = time.monotonic() + 60
    while True:
        answer = client.request(method, path, json=body)
        if answer.status_code != 503 or time.monotonic() > deadline:
            answer.raise_for_status()
            return answer.json()
        time.sleep(0.5)


def resume(client: httpx.Client, run_id: str, run_input: dict[str, Any]) -> None:
    """Resume a paused run with `run_input`. Prefect stores the input's schema just after
    the run shows Paused and refuses a resume until then ("Run input schema not found."),
    answering 200 either way: ask again until it accepts."""
    deadline = time.monotonic() + 60
    while True:
        answer = api_call(client, "POST", f"/flow_runs/{run_id}/resume", {"run_input": run_input})
        if answer["status"] == "ACCEPT":
            return
        reason = str((answer.get("details") or {}).get("reason", ""))
        if "schema not found" not in reason or time.monotonic() > deadline:
            raise AssertionError(f"resume of flow run {run_id} refused: {answer}")
        time.sleep(0.2)


def api_get(client: httpx.Client, path: str) -> Any:
    """`api_call` of a GET."""
    return api_call(client, "GET", path)


def start_up(
    cwd: Path, env: dict[str, str], log: IO[bytes], state: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """`feedback-ops up` on a free port, and that port once its server listens. The
    suite's other processes open connections from the same range of ports, so one may
    take the port between its choice and the server's start: then `up` says so and
    exits, and is started again on another (three tries)."""
    for _ in range(3):
        port = free_port()
        up = subprocess.Popen(
            [str(FEEDBACK_OPS), "up", "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def started(up: subprocess.Popen[bytes] = up, port: int = port) -> bool:
            return up.poll() is not None or port_accepts("127.0.0.1", port)

        wait_until(started, timeout=180, what="the Prefect server of up")
        if up.poll() is None:
            return up, port
        server_log = (state / "prefect-server.log").read_text(errors="replace")
        assert "already in use" in server_log, (cwd / "up.log").read_text()[-3000:]
    raise AssertionError("up found its port taken three times in a row")
