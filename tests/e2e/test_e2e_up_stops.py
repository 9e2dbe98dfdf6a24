"""`feedback-ops up` leaves no Prefect server behind: not when Ctrl-C also ends the
`tee` its output is piped into, and not when `up` itself is killed."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
from support.net import free_port, port_accepts, wait_until

FEEDBACK_OPS = Path(sys.executable).parent / "feedback-ops"


def start_up(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    """`feedback-ops up | tee up.log`, as an operator types it, in a session of its own
    (so a SIGINT to its process group is the terminal's Ctrl-C)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FEEDBACK_OPS_"))
    } | {
        "FEEDBACK_OPS_STATE_DIR": str(tmp_path / "state"),
        "BACKUP_URL": f"file://{tmp_path}/backups",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    command = f"{shlex.quote(str(FEEDBACK_OPS))} up --port {port} | tee up.log"
    return subprocess.Popen(
        ["bash", "-c", command],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def servers_of(port: int) -> list[psutil.Process]:
    """The `prefect server start` processes listening for this test's port."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "server" in cmdline and "start" in cmdline and str(port) in cmdline:
            found.append(proc)
    return found


def served(port: int) -> bool:
    """Whether the served `database-backup/daily-0200` deployment is registered."""
    url = f"http://127.0.0.1:{port}/api/deployments/name/database-backup/daily-0200"
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def up_process(shell: subprocess.Popen[bytes]) -> psutil.Process:
    (up,) = [
        child
        for child in psutil.Process(shell.pid).children()
        if any(part.endswith("feedback-ops") for part in child.cmdline())
    ]
    return up


@pytest.mark.e2e
@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", ["ctrl-c through tee", "sigkill of up"])
def test_no_server_outlives_up(tmp_path: Path, how: str) -> None:
    port = free_port()
    shell = start_up(tmp_path, port)
    try:
        wait_until(lambda: bool(servers_of(port)) and port_accepts("127.0.0.1", port),
                   timeout=180, what="the Prefect server of up")  # fmt: skip
        # Ctrl-C once the deployments are served, as an operator who watched it start.
        wait_until(lambda: served(port), timeout=180, what="up serving its deployments")
        (server,) = servers_of(port)

        if how == "ctrl-c through tee":
            os.killpg(shell.pid, signal.SIGINT)
        else:
            up_process(shell).kill()

        try:
            shell.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail(f"up did not stop:\n{(tmp_path / 'up.log').read_text()[-3000:]}")
        psutil.wait_procs([server], timeout=60)
        assert not server.is_running()
        wait_until(lambda: not port_accepts("127.0.0.1", port), timeout=30, what="port closed")
        assert servers_of(port) == []
    finally:
        for proc in servers_of(port):
            proc.kill()
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()
