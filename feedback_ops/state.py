"""The state folder: Prefect's SQLite database (with every saved block, secrets
included, and the key that decrypts them), the server's log and the local backups.

It is made private: the folders 0700, the files 0600. Whoever can read `prefect.db`
can decrypt every saved secret, since Prefect keeps its encryption key in the same
database unless `PREFECT_SERVER_ENCRYPTION_KEY` is set.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

# Applied to the CLI's process and so to the Prefect server and flow runs it starts:
# SQLite creates its journal files later, beside the database, with the umask.
PRIVATE_UMASK = 0o077


def make_private(*folders: Path) -> None:
    """Create the folders 0700 (an existing one keeps its mode: see `loosened`), and
    make every file created from now on in this process and its children 0600."""
    os.umask(PRIVATE_UMASK)
    for folder in folders:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)


def loosened(folder: Path) -> list[tuple[Path, int]]:
    """The folder, and the files and folders inside it, that others than the owner may
    read, write or enter, with their modes."""
    paths = [folder]
    for root, dirs, files in os.walk(folder):
        paths += [Path(root, name) for name in (*dirs, *files)]
    return [(path, mode) for path in paths if (mode := _open_mode(path))]


def warning_for(paths: list[tuple[Path, int]], folder: Path) -> str | None:
    """One line that names what in `folder` is open to others and how to close it."""
    if not paths:
        return None
    first, mode = paths[0]
    more = f" (and {len(paths) - 1} more)" if len(paths) > 1 else ""
    return (
        f"warning: {first} is open to other users, mode {mode:04o}{more}; this folder holds "
        f"the saved secrets and the key that decrypts them: chmod -R go= {folder}"
    )


def _open_mode(path: Path) -> int:
    """The permission bits of `path` if others than the owner have any, else 0."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:  # removed while we looked (a journal file)
        return 0
    if stat.S_ISLNK(mode) or not mode & 0o077:
        return 0
    return stat.S_IMODE(mode)
