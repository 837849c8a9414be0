"""Uploaded source videos in object storage, so the API and the workers share no disk (issue 15).

``POST /v1/videos/upload`` stores the probed file at
``<prefix>/uploads/<owner_id>/<random>/<name>`` and queues that ``s3://`` URL;
whichever worker claims the video fetches it to a private temporary file.
A worker opens only objects under the video owner's own uploads prefix: a row
naming anything else (another owner's upload, a published frame, another
bucket, a ``..`` path) is refused as bad input, never read. The object-storage
backend (``pipeline.storage.bucket``) offers these through the storage contract.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path, PurePosixPath
from uuid import UUID

from pipeline.core.errors import BadInputError
from pipeline.core.locations import S3Location, is_object_url, split_object_url
from pipeline.storage.s3 import S3Store

UPLOADS = "uploads"
# A multipart upload this old belongs to a killed API process (an upload takes minutes, not a day).
STALE_MULTIPART_S = 24 * 3600.0


def uploads_url(location: S3Location, owner_id: UUID | None = None) -> str:
    """``s3://bucket/prefix/uploads/[<owner>/]``: where (one owner's) uploaded sources live."""
    parts = (UPLOADS, str(owner_id)) if owner_id else (UPLOADS,)
    return location.url(location.key(*parts)) + "/"


def upload_source(store: S3Store, owner_id: UUID, path: Path, name: str) -> str:
    """Store a local, already probed video as one of ``owner_id``'s sources; its ``s3://`` URL."""
    key = store.location.key(UPLOADS, str(owner_id), uuid.uuid4().hex, name)
    store.upload_file(key, path)
    return store.location.url(key)


def is_upload(source: str, location: S3Location) -> bool:
    """Whether ``source`` names an uploaded source in the bucket (any owner's)."""
    return is_object_url(source) and source.startswith(uploads_url(location))


def upload_name(source: str) -> str:
    """The file name part of an uploaded source's URL (what users called it)."""
    return PurePosixPath(source).name


def check_owned_upload(source: str, location: S3Location, owner_id: UUID | None) -> str:
    """The object key of ``source`` when it is one of ``owner_id``'s uploads; else :class:`BadInputError`.

    ``owner_id`` None (an operator's own run): any owner's upload in the bucket.
    """
    label = f"upload:{upload_name(source)}"
    prefix = uploads_url(location, owner_id)
    parts = source[len(prefix):].split("/") if source.startswith(prefix) else []
    expected = 2 if owner_id else 3  # [<owner>/]<random>/<name>
    if len(parts) != expected or any(p in ("", ".", "..") for p in parts):
        raise BadInputError(f"{label}: not an uploaded video of this owner in {uploads_url(location)}")
    return split_object_url(source)[1]


def fetch_upload(store: S3Store, source: str, dest_dir: Path, owner_id: UUID | None) -> Path:
    """Download one of ``owner_id``'s uploads into ``dest_dir`` (a private temporary directory)."""
    key = check_owned_upload(source, store.location, owner_id)
    dest = dest_dir / f"source{PurePosixPath(key).suffix[:16]}"
    try:
        store.download_file(key, dest)
    except FileNotFoundError:
        raise BadInputError(f"upload:{upload_name(source)}: the uploaded video is gone from object storage") from None
    if dest.stat().st_size == 0:
        raise BadInputError(f"upload:{upload_name(source)}: file is empty (0 bytes)")
    return dest


def abort_stale_multipart(store: S3Store, older_than_s: float = STALE_MULTIPART_S) -> int:
    """Abort multipart uploads of sources that killed API processes left (unseen, but billed)."""
    return store.abort_uploads(store.location.key(UPLOADS) + "/", started_before=time.time() - older_than_s)
