"""The configuration backup key block: seals the secrets inside configuration bundles."""

from __future__ import annotations

from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, SecretStr, field_validator

from tasks.sealing import parse_key


class ConfigBackupKey(Block):
    """The AES-256-GCM key that seals secrets in `pos-config-backup` and
    `app-config-backup` bundles. Without a key, secrets are left out of the bundles.

    Keep a copy of the key outside the platform (a password manager, a safe): a bundle
    is only as recoverable as its key.

    Example:
        Load the key saved by `feedback-ops up`:
        ```python
        from blocks.encryption import ConfigBackupKey

        key = ConfigBackupKey.load("BLOCK_NAME").key_bytes()
        ```
    """

    _block_type_name: ClassVar[str] = "Feedback Ops Config Backup Key"
    _block_type_slug: ClassVar[str] = "feedback-ops-config-backup-key"
    _description: ClassVar[str] = "AES-256-GCM key for the secrets in configuration backups."
    _documentation_url: ClassVar[HttpUrl] = HttpUrl(
        "https://cryptography.io/en/latest/hazmat/primitives/aead/"
    )

    key: SecretStr | None = Field(
        default=None, description="32 bytes, base64 (openssl rand -base64 32)."
    )

    @field_validator("key")
    @classmethod
    def _valid_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_key(value.get_secret_value(), variable="key")
        return value

    def key_bytes(self) -> bytes | None:
        """The key, or None when secrets are to be left out."""
        return parse_key(self.key.get_secret_value()) if self.key is not None else None
