"""`blocks_from_env`: the environment, read into Prefect blocks (pure: no API, no I/O)."""

from __future__ import annotations

from pathlib import Path

import pytest

from blocks import (
    AlertChannels,
    BackupStorage,
    PlatformGateway,
    PostgresDatabase,
    WebhookDeliveries,
)
from blocks.names import BACKUP_STORAGE_BLOCK, OPS_DATABASE_BLOCK, PLATFORM_DATABASE_BLOCK
from feedback_ops.config import blocks_from_env
from feedback_ops.errors import ConfigError

PASSWORD = "s3cr3t:p@ss/wörd"
ENCODED_PASSWORD = "s3cr3t%3Ap%40ss%2Fw%C3%B6rd"
DATABASE_URL = f"postgresql://backup%20user:{ENCODED_PASSWORD}@db.internal.se:6543/platform"


def platform(blocks: dict) -> PostgresDatabase:
    block = blocks[PLATFORM_DATABASE_BLOCK]
    assert isinstance(block, PostgresDatabase)
    return block


def ops(blocks: dict) -> PostgresDatabase:
    block = blocks[OPS_DATABASE_BLOCK]
    assert isinstance(block, PostgresDatabase)
    return block


def storage(blocks: dict) -> BackupStorage:
    block = blocks[BACKUP_STORAGE_BLOCK]
    assert isinstance(block, BackupStorage)
    return block


def config_error(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        blocks_from_env(env)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults(tmp_path: Path) -> None:
    blocks = blocks_from_env({"FEEDBACK_OPS_STATE_DIR": str(tmp_path)})

    # Alert channels stay unconfigured until their variables are set.
    assert set(blocks) == {
        "platform-postgres",
        "ops-postgres",
        "platform-redis",
        "backup-storage",
        "escalation-contacts",
        "pos-providers",
        "platform-gateway",
        "config-backup-key",
        "webhook-deliveries",
        "alert-channels",
    }
    channels = blocks["alert-channels"]
    assert isinstance(channels, AlertChannels)
    assert [channels.slack, channels.email, channels.pagerduty, channels.sms] == [None] * 4
    for db in (platform(blocks), ops(blocks)):
        assert (db.host, db.port, db.database, db.username) == (
            "127.0.0.1",
            5432,
            "postgres",
            "postgres",
        )
        assert db.password is None
    gateway = blocks["platform-gateway"]
    assert isinstance(gateway, PlatformGateway)
    assert (gateway.url, gateway.admin_token) == (None, None)
    backups = storage(blocks)
    assert backups.url == f"file://{tmp_path / 'backups'}"
    assert backups.replica_urls == []
    assert backups.sse == "AES256"
    assert backups.endpoint_url is None


def test_default_state_dir_is_dot_state_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    blocks = blocks_from_env({})

    assert storage(blocks).url == f"file://{tmp_path / '.state' / 'backups'}"


def test_database_url_is_parsed_with_a_percent_encoded_password() -> None:
    blocks = blocks_from_env({"DATABASE_URL": DATABASE_URL + "?sslmode=require"})

    db = platform(blocks)
    assert db.host == "db.internal.se"
    assert db.port == 6543
    assert db.database == "platform"
    assert db.username == "backup user"
    assert db.password is not None
    assert db.password.get_secret_value() == PASSWORD
    assert db.sslmode == "require"
    assert db.display_name == "backup user@db.internal.se:6543/platform"
    assert db.libpq_env()["PGPASSWORD"] == PASSWORD


def test_ops_database_url_defaults_to_database_url() -> None:
    blocks = blocks_from_env({"DATABASE_URL": DATABASE_URL})

    assert ops(blocks).model_dump() == platform(blocks).model_dump()
    assert ops(blocks).password is not None
    assert ops(blocks).password.get_secret_value() == PASSWORD


def test_ops_database_url_when_set_is_its_own_database() -> None:
    blocks = blocks_from_env(
        {"DATABASE_URL": DATABASE_URL, "OPS_DATABASE_URL": "postgresql://ops@ops.internal.se/ops"}
    )

    assert (ops(blocks).host, ops(blocks).port, ops(blocks).database) == (
        "ops.internal.se",
        5432,
        "ops",
    )
    assert ops(blocks).username == "ops"
    assert ops(blocks).password is None
    assert platform(blocks).host == "db.internal.se"


def test_replica_urls_are_split_on_commas_and_trimmed(tmp_path: Path) -> None:
    blocks = blocks_from_env(
        {
            "BACKUP_URL": "s3://platform-backups-sto/db",
            "BACKUP_REPLICA_URLS": f" s3://platform-backups-got/db , file://{tmp_path}/r ,, ",
        }
    )

    assert storage(blocks).url == "s3://platform-backups-sto/db"
    assert storage(blocks).replica_urls == ["s3://platform-backups-got/db", f"file://{tmp_path}/r"]


def test_s3_variables_reach_the_storage_block() -> None:
    blocks = blocks_from_env(
        {
            "BACKUP_URL": "s3://platform-backups-sto/db",
            "S3_ENDPOINT_URL": "http://127.0.0.1:9000",
            "AWS_DEFAULT_REGION": "eu-north-1",
            "BACKUP_SSE": "aws:kms",
            "BACKUP_KMS_KEY_ID": "alias/backups",
            "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "very-secret-key",
        }
    )

    block = storage(blocks)
    assert block.endpoint_url == "http://127.0.0.1:9000"
    assert block.region_name == "eu-north-1"
    assert (block.sse, block.kms_key_id) == ("aws:kms", "alias/backups")
    assert block.aws_access_key_id == "AKIAEXAMPLE"
    assert block.aws_secret_access_key is not None
    assert block.aws_secret_access_key.get_secret_value() == "very-secret-key"


def existing_blocks(tmp_path: Path) -> dict:
    return blocks_from_env(
        {
            "DATABASE_URL": DATABASE_URL,
            "OPS_DATABASE_URL": "postgresql://ops:opspw@ops.internal.se/ops",
            "BACKUP_URL": f"file://{tmp_path}/primary",
            "BACKUP_REPLICA_URLS": "s3://platform-backups-got/db",
            "BACKUP_SSE": "aws:kms",
            "BACKUP_KMS_KEY_ID": "alias/backups",
            "AWS_DEFAULT_REGION": "eu-north-1",
        }
    )


def test_unset_variables_keep_the_existing_blocks(tmp_path: Path) -> None:
    existing = existing_blocks(tmp_path)

    blocks = blocks_from_env({"FEEDBACK_OPS_STATE_DIR": str(tmp_path / "elsewhere")}, existing)

    for name in existing:
        assert blocks[name].model_dump() == existing[name].model_dump(), name
    assert platform(blocks).password is not None
    assert platform(blocks).password.get_secret_value() == PASSWORD
    assert storage(blocks).url == f"file://{tmp_path}/primary"
    assert storage(blocks).replica_urls == ["s3://platform-backups-got/db"]


def test_a_set_variable_overrides_only_its_field(tmp_path: Path) -> None:
    existing = existing_blocks(tmp_path)

    blocks = blocks_from_env({"BACKUP_SSE": "AES256"}, existing)

    assert storage(blocks).sse == "AES256"
    assert storage(blocks).url == f"file://{tmp_path}/primary"
    assert storage(blocks).replica_urls == ["s3://platform-backups-got/db"]
    assert storage(blocks).kms_key_id == "alias/backups"
    assert storage(blocks).region_name == "eu-north-1"
    assert ops(blocks).host == "ops.internal.se"


def test_empty_replica_urls_clear_the_replicas(tmp_path: Path) -> None:
    existing = existing_blocks(tmp_path)

    blocks = blocks_from_env({"BACKUP_REPLICA_URLS": ""}, existing)

    assert storage(blocks).replica_urls == []
    assert storage(blocks).url == f"file://{tmp_path}/primary"


def test_invalid_replica_url_names_backup_replica_urls() -> None:
    message = config_error({"BACKUP_REPLICA_URLS": "s3://platform-backups-got/db, ftp://x/y"})

    assert message.startswith("BACKUP_REPLICA_URLS ")
    assert "'ftp'" in message


def test_backup_url_with_an_unknown_scheme() -> None:
    assert config_error({"BACKUP_URL": "ftp://x/y"}) == (
        "BACKUP_URL must be file:///path or s3://bucket/prefix, got scheme 'ftp'"
    )


@pytest.mark.parametrize("url", ["file://relative/backups", "file:relative/backups"])
def test_relative_file_url_is_rejected(url: str) -> None:
    message = config_error({"BACKUP_URL": url})

    assert message.startswith("BACKUP_URL ")
    assert "file:///" in message or "absolute" in message


@pytest.mark.parametrize(
    "bucket",
    ["Platform-Backups", "platform_backups", "ab", "-platform", "platform-", "b" * 64],
)
@pytest.mark.parametrize("variable", ["BACKUP_URL", "BACKUP_REPLICA_URLS"])
def test_invalid_s3_bucket_names_are_rejected(variable: str, bucket: str) -> None:
    message = config_error({variable: f"s3://{bucket}/db"})

    assert message.startswith(f"{variable} ")
    assert "bucket" in message


@pytest.mark.parametrize("bucket", ["abc", "platform-backups-sto", "backups.feedback.se", "b" * 63])
def test_valid_s3_bucket_names_are_accepted(bucket: str) -> None:
    assert storage(blocks_from_env({"BACKUP_URL": f"s3://{bucket}/db"})).url == f"s3://{bucket}/db"


def test_credentials_in_an_s3_url_are_refused_without_repeating_them() -> None:
    message = config_error({"BACKUP_URL": "s3://key:topsecret@platform-backups/db"})

    assert message.startswith("BACKUP_URL ")
    assert "topsecret" not in message


@pytest.mark.parametrize("variable", ["DATABASE_URL", "OPS_DATABASE_URL"])
def test_a_non_postgresql_database_url_names_its_variable(variable: str) -> None:
    message = config_error({variable: "mysql://root:hunter2@127.0.0.1/platform"})

    assert message.startswith(f"{variable} ")
    assert "'mysql'" in message
    assert "hunter2" not in message


def test_a_bad_port_names_database_url_without_the_password() -> None:
    message = config_error({"DATABASE_URL": "postgresql://u:hunter2@db:99999/platform"})

    assert message.startswith("DATABASE_URL ")
    assert "hunter2" not in message


def test_an_unknown_sse_names_backup_sse() -> None:
    message = config_error({"BACKUP_SSE": "des"})

    assert message.startswith("BACKUP_SSE ")
    assert "'des'" in message


def test_secrets_never_appear_in_repr_str_or_json(tmp_path: Path) -> None:
    blocks = blocks_from_env(
        {
            "DATABASE_URL": DATABASE_URL,
            "OPS_DATABASE_URL": "postgresql://ops:ops-only-secret@ops.internal.se/ops",
            "BACKUP_URL": "s3://platform-backups-sto/db",
            "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "aws-secret-value",
            "AWS_SESSION_TOKEN": "aws-session-value",
        }
    )

    secrets = [
        PASSWORD,
        ENCODED_PASSWORD,
        "ops-only-secret",
        "aws-secret-value",
        "aws-session-value",
    ]
    for name, block in blocks.items():
        for shown in (repr(block), str(block), block.model_dump_json(), repr(blocks)):
            for secret in secrets:
                assert secret not in shown, (name, shown)
    # ... while the blocks do hold them.
    assert ops(blocks).password is not None
    assert ops(blocks).password.get_secret_value() == "ops-only-secret"
    assert storage(blocks).aws_session_token is not None
    assert storage(blocks).aws_session_token.get_secret_value() == "aws-session-value"


def webhooks(blocks: dict) -> WebhookDeliveries:
    block = blocks["webhook-deliveries"]
    assert isinstance(block, WebhookDeliveries)
    return block


def test_webhook_columns_named_otherwise_reach_the_deliveries_block() -> None:
    block = webhooks(
        blocks_from_env(
            {
                "WEBHOOK_ATTEMPTS_TABLE": "pos.webhook_log",
                "WEBHOOK_ATTEMPTS_COLUMNS": "body=payload_raw, event_id=provider_event_id",
                "SQUARE_WEBHOOK_SIGNATURE_KEY": "sq-key",
            }
        )
    )

    assert block.table == "pos.webhook_log"
    assert block.columns()["body"] == "payload_raw"
    assert block.columns()["event_id"] == "provider_event_id"
    assert block.columns()["provider"] == "provider"
    assert block.square_signature_key is not None
    assert block.square_signature_key.get_secret_value() == "sq-key"
    assert webhooks(blocks_from_env({"WEBHOOK_ATTEMPTS_TABLE": ""})).table == (
        "public.webhook_delivery_attempts"
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WEBHOOK_ATTEMPTS_COLUMNS": "payload=raw"}, "WEBHOOK_ATTEMPTS_COLUMNS"),
        ({"WEBHOOK_ATTEMPTS_COLUMNS": "body"}, "WEBHOOK_ATTEMPTS_COLUMNS"),
        ({"WEBHOOK_ATTEMPTS_COLUMNS": "body=raw body"}, "WEBHOOK_ATTEMPTS_COLUMNS"),
        ({"WEBHOOK_ATTEMPTS_TABLE": "attempts; DROP TABLE x"}, "WEBHOOK_ATTEMPTS_TABLE"),
        ({"WEBHOOK_REPLAY_CONCURRENCY": "500"}, "WEBHOOK_REPLAY_CONCURRENCY"),
    ],
)
def test_a_bad_webhook_setting_names_its_variable(env: dict[str, str], named: str) -> None:
    assert named in config_error(env)
