"""The command-line tools the system clients run: found on PATH, asked their version,
and started so that none outlives the process that runs it."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

from feedback_ops.errors import OpsError

# `--version` answers at once; a tool that does not is broken, not slow.
TOOL_VERSION_TIMEOUT_SECONDS = 30


def installed(name: str, package: str) -> str:
    """The path of the tool `name` on PATH.

    Raises:
        OpsError: it is not installed; names the Debian package that brings it.
    """
    path = shutil.which(name)
    if path is None:
        raise OpsError(f"{name} is not installed (apt-get install {package})")
    return path


def tool_version(path: str) -> str:
    """The tool's own `--version` line: `pg_dump (PostgreSQL) 15.20`, `redis-cli 7.0.15`."""
    out = subprocess.run(
        [path, "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=TOOL_VERSION_TIMEOUT_SECONDS,
    )
    return out.stdout.strip()


PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

# Looked up once here: the function below runs in a forked child before exec, where
# loading a library could wait on a lock another thread of the parent held.
_prctl = (
    ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl
    if sys.platform == "linux"
    else None
)


def ends_with_parent() -> None:
    """`preexec_fn` of every tool the clients start: the kernel sends the tool SIGTERM
    when the thread that started it ends, so a flow process killed mid-backup leaves no
    pg_dump or redis-cli running on. Each tool is started and waited for on one thread.
    """
    if _prctl is None:
        return
    parent = os.getppid()
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)


class SilenceWatch:
    """Stops a tool whose output stops coming.

    A pg_dump that was stopped (SIGSTOP, a frozen container) or waits on a peer that
    vanished sends nothing, and the read of its pipe would wait out the step's limit of
    hours while the system's lock stays held. Used as a context manager around the
    reads; `heard()` is called on every chunk, and after a silence longer than allowed
    the tool is killed, which ends the read, and `reason` says why.
    """

    def __init__(
        self, proc: subprocess.Popen[bytes], what: str, seconds: float, first_seconds: float
    ) -> None:
        """`seconds` of silence are allowed between chunks, `first_seconds` before the
        first one (a tool may wait for locks before it writes)."""
        self._proc = proc
        self._what = what
        self._seconds = seconds
        self._first_seconds = first_seconds
        self._last = time.monotonic()
        self._heard = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"{what}-silence", daemon=True)
        self.reason: str | None = None

    def heard(self) -> None:
        """The tool sent output just now."""
        self._last = time.monotonic()
        self._heard = True

    def __enter__(self) -> SilenceWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(min(1.0, self._seconds / 4)):
            allowed = self._seconds if self._heard else self._first_seconds
            if time.monotonic() - self._last > allowed and self._proc.poll() is None:
                self.reason = (
                    f"{self._what} sent nothing for {allowed:g} s (stopped or hung) and was killed"
                )
                self._proc.kill()  # delivered to a stopped process too
                return
