"""The command-line tools the system clients run: found on PATH, asked their version."""

from __future__ import annotations

import shutil
import subprocess

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
