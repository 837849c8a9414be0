"""S3-compatible object storage through boto3 (AWS S3, R2, B2, MinIO, Railway/Supabase buckets).

Endpoint, region and credentials come from the standard AWS variables
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_REGION``/``AWS_DEFAULT_REGION``), read by
boto3 itself; vidx never holds or prints them. Every failure of the service
(refused credentials, unreachable endpoint, missing bucket, throttling)
becomes one :class:`TransientError` line: workers retry it, nothing is lost.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pipeline.core.errors import TransientError
from pipeline.core.locations import S3Location

T = TypeVar("T")

# Bounded waits: an unreachable endpoint fails in seconds, not minutes.
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
MAX_ATTEMPTS = 3
_CREDENTIAL_CODES = {
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken",
    "InvalidToken", "InvalidClientTokenId", "AuthorizationHeaderMalformed", "Forbidden", "403",
}
_MISSING_CODES = {"NoSuchKey", "NotFound", "404"}


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def _client_identity() -> tuple[str | None, ...]:
    """What a client depends on (the cache key); secrets are hashed only by identity of the tuple."""
    return (
        _env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"), _env("AWS_REGION", "AWS_DEFAULT_REGION"),
        _env("AWS_ACCESS_KEY_ID"), _env("AWS_SECRET_ACCESS_KEY"), _env("AWS_SESSION_TOKEN"), _env("AWS_PROFILE"),
    )


@lru_cache(maxsize=8)
def _cached_client(identity: tuple[str | None, ...]) -> Any:
    import boto3  # heavy (~0.3 s): loaded only when object storage is used
    from botocore.config import Config  # botocore: comes with boto3

    endpoint, region = identity[0], identity[1]
    config = Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
        signature_version="s3v4",
        # S3-compatible services (R2, B2, MinIO) want path-style URLs and no optional checksums
        s3={"addressing_style": "path" if endpoint else "auto"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=region or "us-east-1", config=config)


def s3_client() -> Any:
    """A boto3 S3 client for the current AWS_* environment (one per distinct environment per process)."""
    return _cached_client(_client_identity())


def endpoint_label(client: Any) -> str:
    """host[:port] of the endpoint, for messages (never user-info or query)."""
    parts = urlsplit(str(client.meta.endpoint_url))
    return parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else "?"


class S3Store:
    """put/get/exists/list/delete of objects under one bucket (keys are full keys, prefix included)."""

    def __init__(self, location: S3Location, client: Any | None = None) -> None:
        self.location = location
        self._client = client

    @property
    def client(self) -> Any:
        """The boto3 client, made on first use: opening the storage costs nothing until it is used."""
        if self._client is None:
            self._client = s3_client()
        return self._client

    def __repr__(self) -> str:
        return f"S3Store({self.location})"

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self._call(lambda: self.client.put_object(
            Bucket=self.location.bucket, Key=key, Body=data, ContentType=content_type))

    def get(self, key: str) -> bytes:
        """The object's bytes; ``FileNotFoundError`` when it does not exist."""
        def fetch() -> bytes:  # the body is read inside _call: a connection lost mid-read is transient too
            body = self.client.get_object(Bucket=self.location.bucket, Key=key)["Body"]
            try:
                return body.read()
            finally:
                body.close()

        return self._call(fetch, key)

    def upload_file(self, key: str, path: Path) -> None:
        """Upload a local file (multipart past 8 MB; boto3 aborts a failed multipart upload itself)."""
        from boto3.exceptions import S3UploadFailedError  # boto3 stays off the local-storage path
        from botocore.exceptions import ClientError  # botocore: comes with boto3

        def upload() -> None:
            try:
                self.client.upload_file(str(path), self.location.bucket, key)
            except S3UploadFailedError as exc:  # boto3 wraps the service's answer: unwrap it for _call
                if isinstance(exc.__context__, ClientError):
                    raise exc.__context__ from None
                raise

        self._call(upload)

    def download_file(self, key: str, dest: Path) -> None:
        """Stream an object into a local file; ``FileNotFoundError`` when it does not exist."""
        self._call(lambda: self.client.download_file(self.location.bucket, key, str(dest)), key)

    def exists(self, key: str) -> bool:
        try:
            self._call(lambda: self.client.head_object(Bucket=self.location.bucket, Key=key), key)
        except FileNotFoundError:
            return False
        return True

    def list(self, prefix: str) -> list[str]:
        """Every key starting with ``prefix`` (paged through)."""
        return list(self._iter_keys(prefix))

    def _iter_keys(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call(lambda: list(paginator.paginate(Bucket=self.location.bucket, Prefix=prefix)))
        for page in pages:
            for item in page.get("Contents", ()):
                yield item["Key"]

    def delete(self, keys: Iterable[str]) -> None:
        """Delete keys (missing ones are fine), 1000 per request."""
        batch = list(keys)
        for i in range(0, len(batch), 1000):
            request = {"Objects": [{"Key": k} for k in batch[i:i + 1000]], "Quiet": True}
            self._call(partial(self.client.delete_objects, Bucket=self.location.bucket, Delete=request))

    def probe(self) -> str:
        """One cheap authenticated request (list one key under the prefix), for ``vidx health``."""
        self._call(lambda: self.client.list_objects_v2(
            Bucket=self.location.bucket, Prefix=self.location.key(""), MaxKeys=1))
        return f"{self.location} at {endpoint_label(self.client)}"

    def abort_uploads(self, prefix: str, started_before: float | None = None) -> int:
        """Abort multipart uploads a killed writer left under ``prefix`` (they cost storage, unseen).

        ``started_before`` (a Unix time): only those initiated earlier, so a live writer's upload survives.
        """
        listing = self._call(lambda: self.client.list_multipart_uploads(Bucket=self.location.bucket, Prefix=prefix))
        uploads = [u for u in listing.get("Uploads", ())
                   if started_before is None or u["Initiated"].timestamp() < started_before]
        for upload in uploads:
            self._call(partial(self.client.abort_multipart_upload,
                               Bucket=self.location.bucket, Key=upload["Key"], UploadId=upload["UploadId"]))
        return len(uploads)

    def _call(self, operation: Callable[[], T], key: str | None = None) -> T:
        """Run one S3 call; map its failures onto vidx's errors with one clear line."""
        from boto3.exceptions import Boto3Error  # boto3 stays off the local-storage path
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError  # with boto3

        where = f"object storage {self.location.bucket} at {endpoint_label(self.client)}"
        try:
            return operation()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if key is not None and (code in _MISSING_CODES or status == 404) and code != "NoSuchBucket":
                raise FileNotFoundError(f"no object {self.location.url(key)}") from None
            if code in _CREDENTIAL_CODES or status == 403:
                raise TransientError(f"{where} refused the credentials ({code or status}): check AWS_ACCESS_KEY_ID "
                                     "and AWS_SECRET_ACCESS_KEY") from None
            if code == "NoSuchBucket":
                raise TransientError(f"{where}: bucket does not exist") from None
            raise TransientError(f"{where} failed: {code or status}") from None
        except (NoCredentialsError, PartialCredentialsError):
            raise TransientError(f"{where}: no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)") from None
        except BotoCoreError as exc:
            raise TransientError(f"{where} unreachable: {type(exc).__name__}") from None
        except Boto3Error as exc:
            raise TransientError(f"{where} failed: {type(exc).__name__}") from None
