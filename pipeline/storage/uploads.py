"""Uploaded source videos in object storage, so the API and the workers share no disk (issue 15).

With ``VIDX_STORAGE_URL`` set, ``POST /v1/videos/upload`` stores the probed file
at ``<prefix>/uploads/<owner_id>/<random>/<name>`` and queues that ``s3://`` URL;
whichever worker claims the video fetches it to a private temporary file.
A worker opens only objects under the video owner's own uploads prefix: a row
naming anything else (another owner's upload, a published frame, another
bucket, a ``..`` path) is refused as bad input, never read.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from uuid import UUID

from pipeline.core.errors import BadInputError
from pipeline.core.locations import S3Location, is_object_url, parse_s3_url, split_object_url

if TYPE_CHECKING:
    from pipeline.core.config import Settings
    from pipeline.storage.s3 import S3Store

UPLOADS = "uploads"
# A multipart upload this old belongs to a killed API process (an upload takes minutes, not a day).
STALE_MULTIPART_S = 24 * 3600.0


def _location(settings: Settings) -> S3Location:
    if not settings.storage_url:
        raise BadInputError("an s3:// source needs VIDX_STORAGE_URL (object storage is not configured)")
    return parse_s3_url(settings.storage_url)


def _store(settings: Settings) -> S3Store:
    from pipeline.storage.s3 import S3Store

    return S3Store(_location(settings))


def uploads_url(settings: Settings, owner_id: UUID | None = None) -> str:
    """``s3://bucket/prefix/uploads/[<owner>/]``: where (one owner's) uploaded sources live."""
    location = _location(settings)
    parts = (UPLOADS, str(owner_id)) if owner_id else (UPLOADS,)
    return location.url(location.key(*parts)) + "/"


def upload_source(settings: Settings, owner_id: UUID, path: Path, name: str) -> str:
    """Store a local, already probed video as one of ``owner_id``'s sources; its ``s3://`` URL."""
    store = _store(settings)
    key = store.location.key(UPLOADS, str(owner_id), uuid.uuid4().hex, name)
    store.upload_file(key, path)
    return store.location.url(key)


def is_upload(source: str, settings: Settings) -> bool:
    """Whether ``source`` names an uploaded source in the configured bucket (any owner's)."""
    return bool(settings.storage_url) and is_object_url(source) and source.startswith(uploads_url(settings))


def upload_name(source: str) -> str:
    """The file name part of an uploaded source's URL (what users called it)."""
    return PurePosixPath(source).name


def check_owned_upload(source: str, settings: Settings, owner_id: UUID | None) -> str:
    """The object key of ``source`` when it is one of ``owner_id``'s uploads; else :class:`BadInputError`.

    ``owner_id`` None (an operator's own run): any owner's upload in the configured bucket.
    """
    label = f"upload:{upload_name(source)}"
    prefix = uploads_url(settings, owner_id)
    parts = source[len(prefix):].split("/") if source.startswith(prefix) else []
    expected = 2 if owner_id else 3  # [<owner>/]<random>/<name>
    if len(parts) != expected or any(p in ("", ".", "..") for p in parts):
        raise BadInputError(f"{label}: not an uploaded video of this owner in {uploads_url(settings)}")
    return split_object_url(source)[1]


def fetch_upload(source: str, settings: Settings, dest_dir: Path, owner_id: UUID | None) -> Path:
    """Download one of ``owner_id``'s uploads into ``dest_dir`` (a private temporary directory)."""
    key = check_owned_upload(source, settings, owner_id)
    dest = dest_dir / f"source{PurePosixPath(key).suffix[:16]}"
    try:
        _store(settings).download_file(key, dest)
    except FileNotFoundError:
        raise BadInputError(f"upload:{upload_name(source)}: the uploaded video is gone from object storage") from None
    if dest.stat().st_size == 0:
        raise BadInputError(f"upload:{upload_name(source)}: file is empty (0 bytes)")
    return dest


def abort_stale_multipart(settings: Settings, older_than_s: float = STALE_MULTIPART_S) -> int:
    """Abort multipart uploads of sources that killed API processes left (unseen, but billed)."""
    if not settings.storage_url:
        return 0
    store = _store(settings)
    return store.abort_uploads(store.location.key(UPLOADS) + "/", started_before=time.time() - older_than_s)
