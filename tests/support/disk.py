"""A tiny tmpfs, for testing what happens when the disk is full."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


class MountNotPermitted(RuntimeError):
    """tmpfs cannot be mounted here (not root, or no CAP_SYS_ADMIN)."""


@contextlib.contextmanager
def tmpfs(size: str = "512k") -> Iterator[Path]:
    """Mount a tmpfs of ``size`` on a new temp dir; yield it; unmount and remove it after."""
    if os.geteuid() != 0:
        raise MountNotPermitted("mounting tmpfs needs root")
    if shutil.which("mount") is None:
        raise MountNotPermitted("no mount(8) binary")
    mountpoint = Path(tempfile.mkdtemp(prefix="fo-full-disk-"))
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        mountpoint.rmdir()
        reason = (proc.stderr or proc.stdout).strip() or f"exit status {proc.returncode}"
        raise MountNotPermitted(f"mount -t tmpfs failed: {reason}")
    try:
        yield mountpoint
    finally:
        # Lazy unmount if something still holds a file open; memory is freed when it closes.
        if (
            subprocess.run(["umount", str(mountpoint)], capture_output=True, check=False).returncode
            != 0
        ):
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, check=True)
        mountpoint.rmdir()
