"""Secrets inside configuration bundles: the key's block, and sealing with AES-256-GCM.

A configuration bundle is plain JSON so that an operator can read it in an emergency.
Every value that is a secret (a block's secret field, or a field whose name says
token, secret, password, key …) is replaced before the bundle is written:

- with a key configured: `{"$sealed": "aes-256-gcm", "kid": …, "nonce": …, "ct": …}`,
  where the ciphertext is bound to the value's place in the bundle (its JSON path is
  the associated data), so a sealed value cannot be moved to another field;
- without one: `{"$redacted": true}`.

Never in clear. `open_sealed` turns a bundle back with the same key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, SecretStr, field_validator

from feedback_ops.errors import ConfigError, OpsError

SEALED = "$sealed"
REDACTED = "$redacted"
ALGORITHM = "aes-256-gcm"

# Field names that hold credentials on the platform and at the POS providers.
SECRET_NAME = re.compile(
    r"(token|secret|password|passwd|api_?key|signing_?key|signature_?key|private_?key|"
    r"credential|webhook_url|routing_key|authorization)",
    re.IGNORECASE,
)


def parse_key(text: str, variable: str = "CONFIG_BACKUP_KEY") -> bytes:
    """A 256-bit key from its base64 text.

    Raises:
        ConfigError: not base64, or not 32 bytes; the message never repeats the text.
    """
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise ConfigError(f"{variable} must be base64 (openssl rand -base64 32)") from None
    if len(key) != 32:
        raise ConfigError(
            f"{variable} must be 32 bytes of base64 (openssl rand -base64 32), got {len(key)}"
        )
    return key


def key_id(key: bytes) -> str:
    """A short fingerprint that says which key sealed a value, and reveals nothing of it."""
    return hashlib.sha256(b"feedback-ops config key\0" + key).hexdigest()[:16]


@dataclass
class SealCount:
    """How many secrets a bundle had, and what became of them."""

    sealed: int = 0
    redacted: int = 0


def seal(
    document: Any,
    key: bytes | None,
    secret_paths: Collection[str] = (),
    count: SealCount | None = None,
    path: str = "",
) -> Any:
    """A copy of `document` with every secret sealed (or redacted without a key).

    A value is a secret when its JSON path is in `secret_paths` (e.g. a block's
    declared secret fields), its field name matches SECRET_NAME, or it is the `value`
    of a row whose `key`, `name` or `setting` matches SECRET_NAME.
    """
    count = count if count is not None else SealCount()
    if isinstance(document, dict):
        out = {}
        # A settings row names its secret in another column: {"key": "smtp_password",
        # "value": "…"} holds a secret in `value`.
        named = any(
            isinstance(document.get(label), str) and SECRET_NAME.search(document[label])
            for label in ("key", "name", "setting")
        )
        for name, value in document.items():
            where = f"{path}/{name}"
            secret = where in secret_paths or SECRET_NAME.search(str(name))
            if named and name == "value":
                secret = True
            if value is not None and secret:
                out[name] = _seal_value(value, key, where, count)
            else:
                out[name] = seal(value, key, secret_paths, count, where)
        return out
    if isinstance(document, list):
        return [
            seal(item, key, secret_paths, count, f"{path}/{i}") for i, item in enumerate(document)
        ]
    return document


def _seal_value(value: Any, key: bytes | None, where: str, count: SealCount) -> dict[str, Any]:
    if key is None:
        count.redacted += 1
        return {REDACTED: True}
    nonce = os.urandom(12)
    plain = json.dumps(value, ensure_ascii=False).encode()
    ciphertext = AESGCM(key).encrypt(nonce, plain, where.encode())
    count.sealed += 1
    return {
        SEALED: ALGORITHM,
        "kid": key_id(key),
        "nonce": base64.b64encode(nonce).decode(),
        "ct": base64.b64encode(ciphertext).decode(),
    }


def open_sealed(document: Any, key: bytes, path: str = "") -> Any:
    """A copy of a sealed bundle with its sealed values decrypted (redacted ones stay).

    Raises:
        OpsError: a value was sealed with another key, or was altered or moved.
    """
    if isinstance(document, dict):
        if document.get(SEALED) == ALGORITHM:
            if document.get("kid") != key_id(key):
                raise OpsError(f"{path} was sealed with another key (kid {document.get('kid')})")
            try:
                plain = AESGCM(key).decrypt(
                    base64.b64decode(document["nonce"]),
                    base64.b64decode(document["ct"]),
                    path.encode(),
                )
            except InvalidTag:
                raise OpsError(
                    f"{path} does not decrypt: altered, or moved from elsewhere"
                ) from None
            return json.loads(plain)
        return {name: open_sealed(v, key, f"{path}/{name}") for name, v in document.items()}
    if isinstance(document, list):
        return [open_sealed(item, key, f"{path}/{i}") for i, item in enumerate(document)]
    return document


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
