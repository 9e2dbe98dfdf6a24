"""Object stores for backups: a local folder or an S3 bucket, behind one small interface.

Plain classes, no Prefect: `BackupStorage` builds them and the tasks in `tasks/` call
them. Every write is atomic: an object appears under its final key only when it was
written whole, so a failed backup never leaves a partial object behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import unquote, urlsplit

from feedback_ops.errors import ConfigError, OpsError, TransientError

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

CHUNK_SIZE = 1024 * 1024
# A dump's size is unknown until it ends, so the part size is fixed: 16 MiB parts allow
# objects up to 160 GiB (S3's 10,000-part limit) while memory stays near a few parts.
MULTIPART_CHUNK_SIZE = 16 * 1024 * 1024
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_TRANSIENT_S3_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "503",
        "500",
    }
)


@dataclass(frozen=True)
class Location:
    """Where backups live: `file:///absolute/path` or `s3://bucket/prefix`."""

    scheme: Literal["file", "s3"]
    root: str
    """The absolute folder for `file`, the bucket for `s3`."""
    prefix: str = ""
    """Key prefix inside the bucket, without leading or trailing slashes."""

    def __str__(self) -> str:
        if self.scheme == "file":
            return f"file://{self.root}"
        return f"s3://{self.root}/{self.prefix}" if self.prefix else f"s3://{self.root}"

    def url_for(self, key: str) -> str:
        """The full URL of `key` below this location."""
        return f"{str(self).rstrip('/')}/{key}"


def parse_location(url: str, *, variable: str = "BACKUP_URL") -> Location:
    """Parse a backup location URL.

    Raises:
        ConfigError: the scheme is not `file` or `s3`, or the path or bucket is invalid.
    """
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(
                f"{variable} must be file:///absolute/path (three slashes), got {_safe(text)!r}"
            )
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ConfigError(f"{variable} must name an absolute path, got {_safe(text)!r}")
        return Location("file", os.path.normpath(path))
    if parts.scheme == "s3":
        bucket = parts.netloc
        if (
            "@" in bucket
            or not _BUCKET_RE.match(bucket)
            or ".." in bucket
            or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", bucket)
        ):
            raise ConfigError(f"{variable} names an invalid S3 bucket: {_safe(text)!r}")
        return Location("s3", bucket, parts.path.strip("/"))
    raise ConfigError(
        f"{variable} must be file:///path or s3://bucket/prefix, "
        f"got scheme {parts.scheme or '(none)'!r}"
    )


def _safe(url: str) -> str:
    """A URL with any user:password part removed, fit for a message."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()
    return url


class Readable(Protocol):
    """Anything with `read(n)`: a pipe, a file, a `HashingReader`."""

    def read(self, size: int = -1, /) -> bytes:
        """Read up to `size` bytes; b"" at the end."""
        ...


@dataclass(frozen=True)
class ObjectInfo:
    """What a store reports about a stored object without reading it."""

    size: int
    encryption: str | None = None
    kms_key_id: str | None = None


@dataclass(frozen=True)
class Digest:
    """Size and sha256 of a byte stream."""

    size: int
    sha256: str


class HashingReader:
    """A read-only stream that hashes what passes through it.

    `on_eof` runs once when the source is exhausted, before the final empty read is
    returned, so a producer that failed (a non-zero exit) can raise there and abort
    the upload that is consuming this stream before it is completed. `on_progress` is
    told the bytes read so far after every read.
    """

    def __init__(
        self,
        source: Readable,
        on_eof: Callable[[], None] | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self._source = source
        self._on_eof = on_eof
        self._on_progress = on_progress
        self._hash = hashlib.sha256()
        self.size = 0
        self._done = False

    def read(self, size: int = -1) -> bytes:
        """Read up to `size` bytes (all that remain for a negative size)."""
        if self._done:
            return b""
        data = self._source.read(size if size is not None and size >= 0 else -1)
        if data:
            self._hash.update(data)
            self.size += len(data)
            if self._on_progress is not None:
                self._on_progress(self.size)
            return data
        self._done = True
        if self._on_eof is not None:
            self._on_eof()
        return b""

    def readable(self) -> bool:
        """Always true: this is a reader."""
        return True

    @property
    def digest(self) -> Digest:
        """Size and sha256 of everything read so far."""
        return Digest(self.size, self._hash.hexdigest())


def digest_chunks(chunks: Iterator[bytes]) -> Digest:
    """Size and sha256 of a stream of chunks."""
    sha = hashlib.sha256()
    size = 0
    for chunk in chunks:
        sha.update(chunk)
        size += len(chunk)
    return Digest(size, sha.hexdigest())


@dataclass(frozen=True)
class Unfinished:
    """An upload that never finished: a local `.partial-*` file or an S3 multipart
    upload that was neither completed nor aborted (its writer was killed)."""

    key: str
    """The key it would have been stored under."""
    handle: str
    """What removes it: the file's path or the multipart upload's id."""


class ObjectStore(ABC):
    """A place that holds backup objects under keys like `database/2027/03/id.dump`."""

    def __init__(self, location: Location) -> None:
        self.location = location

    def url_for(self, key: str) -> str:
        """The URL an operator would use to find `key`."""
        return self.location.url_for(key)

    @abstractmethod
    def check_access(self) -> None:
        """Fail early, with a clear reason, when the store cannot be written."""

    @abstractmethod
    def upload_stream(self, key: str, stream: Readable) -> None:
        """Store everything `stream` yields under `key`, atomically."""

    @abstractmethod
    def read_chunks(self, key: str) -> Iterator[bytes]:
        """Yield the object's bytes in chunks."""

    @abstractmethod
    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Read `length` bytes from `start` (fewer at the end of the object)."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size and encryption of a stored object."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Store a small object (a manifest) atomically."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Read a small object whole."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; removing a missing one is not an error."""

    @abstractmethod
    def list_keys(self, prefix: str = "") -> Iterator[str]:
        """Keys below `prefix`, in no promised order."""

    @abstractmethod
    def unfinished(self, prefix: str = "") -> list[Unfinished]:
        """Uploads below `prefix` whose writer died before finishing them."""

    @abstractmethod
    def discard(self, upload: Unfinished) -> None:
        """Remove an unfinished upload; removing one already gone is not an error."""

    def copy_from(self, source: ObjectStore, key: str) -> None:
        """Copy `key` from another store into this one, streaming."""
        self.upload_stream(key, ChunkStream(source.read_chunks(key)))

    def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""
        try:
            self.stat(key)
        except FileNotFoundError:
            return False
        return True


class ChunkStream:
    """Adapts an iterator of chunks to the `read(n)` interface uploads expect."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        cut = len(self._buffer) if size < 0 else min(size, len(self._buffer))
        data = bytes(self._buffer[:cut])
        del self._buffer[:cut]
        return data

    def readable(self) -> bool:
        return True


class LocalStore(ObjectStore):
    """Backups in a local folder: temporary name, fsync, rename, fsync the folder."""

    @property
    def root(self) -> Path:
        """The store's folder."""
        return Path(self.location.root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"key {key!r} leaves the store")
        return path

    def check_access(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                raise PermissionError(errno.EACCES, "permission denied")
        except OSError as exc:
            raise self._explain(exc) from None

    def upload_stream(self, key: str, stream: Readable) -> None:
        final = self._path(key)
        temp = final.with_name(f".{final.name}.partial-{secrets.token_hex(4)}")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            with open(temp, "wb") as out:
                while chunk := stream.read(CHUNK_SIZE):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, final)
            _fsync_dir(final.parent)
        except OpsError:
            # The stream's own reason (a producer that failed or timed out: TimedOut is
            # an OSError too), not the store's.
            temp.unlink(missing_ok=True)
            raise
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise self._explain(exc) from None
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def read_chunks(self, key: str) -> Iterator[bytes]:
        with open(self._path(key), "rb") as src:
            while chunk := src.read(CHUNK_SIZE):
                yield chunk

    def read_range(self, key: str, start: int, length: int) -> bytes:
        with open(self._path(key), "rb") as src:
            src.seek(start)
            return src.read(length)

    def stat(self, key: str) -> ObjectInfo:
        return ObjectInfo(size=self._path(key).stat().st_size)

    def put_bytes(self, key: str, data: bytes) -> None:
        self.upload_stream(key, ChunkStream(iter((data,))))

    def get_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        if not self.root.is_dir():
            return
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith("."):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield key

    def unfinished(self, prefix: str = "") -> list[Unfinished]:
        found = []
        # Only the prefix's own folder is walked: `database/` is one kind's tree.
        folder = self.root / prefix.rpartition("/")[0]
        for temp in folder.rglob(".*.partial-*") if folder.is_dir() else ():
            key = temp.with_name(temp.name[1:].rsplit(".partial-", 1)[0])
            key_text = key.relative_to(self.root).as_posix()
            if key_text.startswith(prefix):
                found.append(Unfinished(key_text, str(temp)))
        return found

    def discard(self, upload: Unfinished) -> None:
        path = Path(upload.handle)
        if path.parent.resolve().is_relative_to(self.root.resolve()):
            path.unlink(missing_ok=True)

    def _explain(self, exc: OSError) -> OpsError:
        where = f"local backup store {self.location.root}"
        if exc.errno == errno.ENOSPC:
            return OpsError(f"{where} is full: no space left on device")
        if exc.errno == errno.EDQUOT:
            return OpsError(f"{where} is over its disk quota")
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return OpsError(f"{where} cannot be written: {exc.strerror or 'permission denied'}")
        return OpsError(f"{where} failed: {exc.strerror or exc}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class S3Settings:
    """How to reach S3 and how to encrypt what is stored there."""

    endpoint_url: str | None = None
    region_name: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    sse: str | None = "AES256"
    kms_key_id: str | None = None

    def client(self) -> S3Client:
        """A boto3 S3 client with timeouts and standard retries (5xx, throttling)."""
        import boto3
        from botocore.config import Config

        config = Config(
            connect_timeout=10,
            read_timeout=120,
            retries={"max_attempts": 5, "mode": "standard"},
            # S3-compatible servers (MinIO, moto) need path-style when no DNS is set up.
            s3={"addressing_style": "path"} if self.endpoint_url else None,
        )
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region_name,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            aws_session_token=self.session_token,
            config=config,
        )

    def encryption_args(self) -> dict[str, str]:
        """The extra arguments that ask S3 for server-side encryption."""
        args: dict[str, str] = {}
        if self.sse:
            args["ServerSideEncryption"] = self.sse
        if self.sse == "aws:kms" and self.kms_key_id:
            args["SSEKMSKeyId"] = self.kms_key_id
        return args


class S3Store(ObjectStore):
    """Backups in an S3 bucket (AWS, MinIO or any S3-compatible server)."""

    def __init__(self, location: Location, settings: S3Settings) -> None:
        super().__init__(location)
        self.settings = settings
        self._client: S3Client | None = None

    @property
    def client(self) -> S3Client:
        """The boto3 client, created on first use."""
        if self._client is None:
            self._client = self.settings.client()
        return self._client

    @property
    def bucket(self) -> str:
        """The bucket name."""
        return self.location.root

    def _key(self, key: str) -> str:
        return f"{self.location.prefix}/{key}" if self.location.prefix else key

    def check_access(self) -> None:
        with self._errors():
            self.client.head_bucket(Bucket=self.bucket)

    def upload_stream(self, key: str, stream: Readable) -> None:
        from boto3.s3.transfer import TransferConfig

        # Parts are read from the stream one after another and sent by a few threads:
        # memory stays near max_concurrency × part size, whatever the dump's size.
        config = TransferConfig(
            multipart_threshold=MULTIPART_CHUNK_SIZE,
            multipart_chunksize=MULTIPART_CHUNK_SIZE,
            max_concurrency=4,
            max_io_queue=4,
        )
        # A failed multipart upload is aborted by the transfer manager itself, so a
        # partial object never becomes visible under the final key.
        with self._errors(key):
            self.client.upload_fileobj(
                stream,  # type: ignore[arg-type]
                self.bucket,
                self._key(key),
                ExtraArgs=self.settings.encryption_args(),
                Config=config,
            )

    def read_chunks(self, key: str) -> Iterator[bytes]:
        with self._errors(key):
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            try:
                yield from body.iter_chunks(CHUNK_SIZE)
            finally:
                body.close()

    def read_range(self, key: str, start: int, length: int) -> bytes:
        with self._errors(key):
            body = self.client.get_object(
                Bucket=self.bucket, Key=self._key(key), Range=f"bytes={start}-{start + length - 1}"
            )["Body"]
            data: bytes = body.read()
            return data

    def stat(self, key: str) -> ObjectInfo:
        with self._errors(key):
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        return ObjectInfo(
            size=int(head["ContentLength"]),
            encryption=head.get("ServerSideEncryption"),
            kms_key_id=head.get("SSEKMSKeyId"),
        )

    def put_bytes(self, key: str, data: bytes) -> None:
        with self._errors(key):
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                **self.settings.encryption_args(),  # type: ignore[arg-type]
            )

    def get_bytes(self, key: str) -> bytes:
        with self._errors(key):
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            data: bytes = body.read()
            return data

    def delete(self, key: str) -> None:
        with self._errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        strip = len(self.location.prefix) + 1 if self.location.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors():
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for item in page.get("Contents", []):
                    yield item["Key"][strip:]

    def unfinished(self, prefix: str = "") -> list[Unfinished]:
        strip = len(self.location.prefix) + 1 if self.location.prefix else 0
        paginator = self.client.get_paginator("list_multipart_uploads")
        found = []
        with self._errors():
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for upload in page.get("Uploads", []):
                    found.append(Unfinished(upload["Key"][strip:], upload["UploadId"]))
        return found

    def discard(self, upload: Unfinished) -> None:
        with self._errors(upload.key):
            try:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self._key(upload.key), UploadId=upload.handle
                )
            except self.client.exceptions.NoSuchUpload:
                return

    def copy_from(self, source: ObjectStore, key: str) -> None:
        same_server = (
            isinstance(source, S3Store)
            and source.settings.endpoint_url == self.settings.endpoint_url
            and source.settings.access_key_id == self.settings.access_key_id
        )
        if not same_server:
            super().copy_from(source, key)
            return
        assert isinstance(source, S3Store)
        # Server-side copy: the bytes never leave S3 (multipart copy above 5 GB).
        with self._errors(key):
            self.client.copy(
                {"Bucket": source.bucket, "Key": source._key(key)},
                self.bucket,
                self._key(key),
                ExtraArgs=self.settings.encryption_args(),
            )

    @contextlib.contextmanager
    def _errors(self, key: str | None = None) -> Iterator[None]:
        """Turn boto errors into one-line reasons that name the bucket, never a secret."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
        )

        where = self.url_for(key) if key else str(self.location)
        try:
            yield
        except ClientError as exc:
            raise _explain_client_error(exc, where, self.bucket, has_key=key is not None) from None
        except NoCredentialsError:
            raise ConfigError(
                f"no AWS credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ) from None
        except EndpointConnectionError:
            endpoint = self.settings.endpoint_url or "AWS S3"
            raise TransientError(f"S3 endpoint {endpoint} is unreachable ({where})") from None
        except BotoCoreError as exc:
            raise TransientError(f"S3 request for {where} failed: {exc}") from None


def _explain_client_error(exc: Any, where: str, bucket: str, *, has_key: bool) -> OpsError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code == "NoSuchBucket" or (code in ("404", "NotFound") and not has_key):
        return ConfigError(f"S3 bucket {bucket!r} does not exist ({where})")
    if code in ("NoSuchKey", "404", "NotFound"):
        return _NotFound(f"no object at {where}")
    if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled"):
        return ConfigError(f"access denied to {where}: check the credentials and the bucket policy")
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
        return ConfigError(f"S3 rejected the credentials for {where} ({code})")
    if code in _TRANSIENT_S3_CODES or status >= 500:
        return TransientError(f"S3 is unavailable for {where} ({code or status})")
    return OpsError(f"S3 request for {where} failed: {code or status}")


class _NotFound(OpsError, FileNotFoundError):
    """A missing S3 object, also a FileNotFoundError so callers treat both stores alike."""


def open_store(location: Location, s3: S3Settings | None = None) -> ObjectStore:
    """The store for a location; S3 locations use `s3` settings (default: environment)."""
    if location.scheme == "file":
        return LocalStore(location)
    return S3Store(location, s3 or S3Settings())
