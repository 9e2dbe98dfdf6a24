"""`.env.example` and the README's configuration table are made from the settings table,
and every variable the project reads is in it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from blocks.channels import HOW_TO_CONFIGURE
from feedback_ops.config import BLOCK_SPECS
from feedback_ops.settings import SETTINGS, VARIABLES, Kind, env_example, readme_table

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- settings table: begin -->", "<!-- settings table: end -->"
SOURCES = [
    p
    for d in ("blocks", "tasks", "flows", "deployments", "feedback_ops")
    for p in (ROOT / d).rglob("*.py")
]


def test_env_example_is_made_from_the_table() -> None:
    made = subprocess.run(
        [sys.executable, "-m", "feedback_ops.settings", "env-example"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    assert made == env_example()
    assert (ROOT / ".env.example").read_text(encoding="utf-8") == made, (
        "run: python -m feedback_ops.settings env-example > .env.example"
    )


def test_readme_configuration_table_is_made_from_the_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert BEGIN in readme and END in readme
    shown = readme.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"
    assert shown == readme_table(), "paste `python -m feedback_ops.settings readme-table`"


def test_each_variable_is_listed_once_and_every_row_fills_a_known_block() -> None:
    assert len(VARIABLES) == len(set(VARIABLES))
    blocks = {spec.name: spec.block_type for spec in BLOCK_SPECS}
    for setting in SETTINGS:
        if setting.kind is Kind.PROCESS:
            assert setting.block is None and setting.field is None, setting.variable
            continue
        assert setting.block in blocks, setting.variable
        if setting.field is not None:
            assert setting.field in blocks[setting.block].model_fields, setting.variable


def test_every_variable_the_code_reads_is_in_the_table() -> None:
    read = set()
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        read |= set(re.findall(r"environ(?:\.get)?\(\s*\"([A-Z][A-Z0-9_]+)\"", text))
        read |= set(re.findall(r"environ\[\"([A-Z][A-Z0-9_]+)\"\]", text))
        read |= set(re.findall(r"env\.get\(\"([A-Z][A-Z0-9_]+)\"", text))
    ours = {name for name in read if not name.startswith(("PREFECT_", "PG", "REDISCLI"))}
    ours |= {name for name in read if name == "PG_BIN_DIR"}
    assert ours <= set(VARIABLES), ours - set(VARIABLES)


def test_what_an_unconfigured_channel_asks_for_is_in_the_table() -> None:
    for channel, advice in HOW_TO_CONFIGURE.items():
        named = re.findall(r"[A-Z][A-Z0-9_]{3,}", advice)
        assert named and set(named) <= set(VARIABLES), channel


def mentions(text: str, name: str) -> bool:
    """`name` as a whole word: DATABASE_URL is not found inside OPS_DATABASE_URL."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text) is not None


def test_the_variables_are_the_ones_the_issues_name() -> None:
    assert {"DATABASE_URL", "OPS_DATABASE_URL", "BACKUP_URL", "BACKUP_REPLICA_URLS"} <= set(
        VARIABLES
    )
    assert {"BACKUP_SSE", "FEEDBACK_OPS_STATE_DIR", "FEEDBACK_OPS_PORT"} <= set(VARIABLES)


@pytest.mark.parametrize("name", VARIABLES)
def test_env_example_lists_the_variable(name: str) -> None:
    # Set or commented out, each as `NAME=value` on a line of its own.
    assigned = re.compile(rf"^\s*(?:#\s*)?(?:export\s+)?{re.escape(name)}=", re.MULTILINE)
    assert assigned.search((ROOT / ".env.example").read_text(encoding="utf-8")), name


@pytest.mark.parametrize("name", VARIABLES)
def test_readme_mentions_the_variable(name: str) -> None:
    assert mentions((ROOT / "README.md").read_text(encoding="utf-8"), name), name
