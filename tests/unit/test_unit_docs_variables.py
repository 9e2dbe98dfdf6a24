"""Every environment variable the project reads is in .env.example and the README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from feedback_ops.config import VARIABLES

ROOT = Path(__file__).resolve().parents[2]
NAMES = [variable.name for variable in VARIABLES]


def mentions(text: str, name: str) -> bool:
    """`name` as a whole word: DATABASE_URL is not found inside OPS_DATABASE_URL."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text) is not None


def test_the_variables_are_the_ones_the_issue_names() -> None:
    assert {"DATABASE_URL", "OPS_DATABASE_URL", "BACKUP_URL", "BACKUP_REPLICA_URLS"} <= set(NAMES)
    assert {"BACKUP_SSE", "FEEDBACK_OPS_STATE_DIR", "FEEDBACK_OPS_PORT"} <= set(NAMES)
    assert len(NAMES) == len(set(NAMES))


@pytest.mark.parametrize("name", NAMES)
def test_env_example_lists_the_variable(name: str) -> None:
    path = ROOT / ".env.example"
    assert path.is_file(), ".env.example is missing at the repository root"
    # Set or commented out, each as `NAME=value` on a line of its own.
    assigned = re.compile(rf"^\s*(?:#\s*)?(?:export\s+)?{re.escape(name)}=", re.MULTILINE)

    assert assigned.search(path.read_text(encoding="utf-8")), f"{name} not in .env.example"


@pytest.mark.parametrize("name", NAMES)
def test_readme_mentions_the_variable(name: str) -> None:
    assert mentions((ROOT / "README.md").read_text(encoding="utf-8"), name), name
