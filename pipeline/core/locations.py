"""Where objects live: ``s3://bucket/prefix`` URLs and the key scheme under them.

One home for the layout, so the writer (the indexer), the sweeper and every
reader agree: ``<prefix>/<video_id>/<version>/<name>`` holds one immutable,
complete version; ``<prefix>/<video_id>/current.json`` names the current one.
A ``frame_path`` in the database is the full ``s3://`` URL of its object, so
any worker or API process with the bucket's credentials can open it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SCHEME = "s3://"
CURRENT_NAME = "current.json"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-_]{1,253}[a-z0-9]$")


def is_object_url(path: str) -> bool:
    """True for an object-storage URL (``s3://...``), False for a local path."""
    return path.startswith(SCHEME)


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix (no leading or trailing slash; may be empty)."""

    bucket: str
    prefix: str = ""

    def key(self, *parts: str) -> str:
        """The object key of ``parts`` under the prefix."""
        return "/".join(p for p in (self.prefix, *parts) if p)

    def url(self, key: str) -> str:
        """The ``s3://`` URL of an object key in this bucket."""
        return f"{SCHEME}{self.bucket}/{key}"

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}".rstrip("/")


def parse_s3_url(url: str) -> S3Location:
    """Split ``s3://bucket[/prefix]``; ``ValueError`` saying what is wrong."""
    if not is_object_url(url):
        raise ValueError("must start with s3://")
    rest = url[len(SCHEME):]
    bucket, _, prefix = rest.partition("/")
    if "@" in bucket or ":" in bucket:
        raise ValueError("no credentials or port in the URL: use the AWS_* variables")
    if not _BUCKET.match(bucket):
        raise ValueError("a bucket name of 3-255 lowercase letters, digits, dots, dashes")
    return S3Location(bucket, prefix.strip("/"))


def split_object_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); ``ValueError`` when there is no key."""
    location = parse_s3_url(url)
    if not location.prefix:
        raise ValueError(f"no object key in {url}")
    return location.bucket, location.prefix
