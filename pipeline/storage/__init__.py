"""Where frames and sidecars are stored: a local directory or S3-compatible object storage (issue 15).

The one interface the indexer, ``vidx sheet``, ``vidx reembed`` and the HTTP
API use. Writers: :func:`open_staging` (a run's private version, published
before the rows commit). Readers: :func:`read_frame` opens any ``frame_path``
the database holds, a local path or an ``s3://`` URL, from any process.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pipeline.core.locations import is_object_url, parse_s3_url, split_object_url

if TYPE_CHECKING:
    from pipeline.core.config import Settings
    from pipeline.storage.local import LocalStore
    from pipeline.storage.s3 import S3Store
    from pipeline.storage.sidecar import SidecarStaging
    from pipeline.storage.versions import ObjectStaging

__all__ = ["in_store", "is_object_url", "open_staging", "open_store", "read_frame", "read_sidecar"]


def open_store(settings: Settings) -> LocalStore | S3Store:
    """The configured store: ``VIDX_STORAGE_URL``'s bucket, else the local ``VIDX_SIDECAR_DIR``."""
    if settings.storage_url:
        from pipeline.storage.s3 import S3Store

        return S3Store(parse_s3_url(settings.storage_url))
    from pipeline.storage.local import LocalStore

    return LocalStore(settings.sidecar_dir)


def open_staging(settings: Settings, video_id: UUID) -> SidecarStaging | ObjectStaging:
    """A private place for one run's frames and sidecar; both kinds publish with the same calls."""
    if settings.storage_url:
        from pipeline.storage.s3 import S3Store
        from pipeline.storage.versions import ObjectStaging

        # frames are encoded to a local scratch directory, then uploaded as one version
        return ObjectStaging(S3Store(parse_s3_url(settings.storage_url)), settings.sidecar_dir, video_id)
    from pipeline.storage.sidecar import SidecarStaging

    return SidecarStaging(settings.sidecar_dir, video_id)


def read_frame(frame_path: str | Path, settings: Settings | None = None) -> bytes:
    """The bytes of a stored frame, wherever the database says it is (``frame_path`` as stored).

    The one reader of stored frames (``vidx sheet``, ``vidx reembed``, the
    HTTP API). With ``settings``, the frame must lie inside the configured
    store (``VIDX_STORAGE_URL``'s prefix or ``VIDX_SIDECAR_DIR``), so a bad
    row can never serve another file or bucket. ``FileNotFoundError`` when it
    is gone or outside the store; ``TransientError`` when object storage
    cannot be reached or refuses the credentials.
    """
    text = str(frame_path)
    if settings is not None and not in_store(text, settings):
        raise FileNotFoundError(f"frame outside the configured store: {text}")
    if is_object_url(text):
        from pipeline.core.locations import S3Location
        from pipeline.storage.s3 import S3Store

        bucket, key = split_object_url(text)
        return S3Store(S3Location(bucket)).get(key)
    return Path(text).read_bytes()


def in_store(frame_path: str, settings: Settings) -> bool:
    """Whether ``frame_path`` names an object under the configured store (no ``..`` tricks)."""
    if is_object_url(frame_path):
        if not settings.storage_url or "/../" in frame_path or frame_path.endswith("/.."):
            return False
        return frame_path.startswith(settings.storage_url.rstrip("/") + "/")
    path = Path(frame_path)
    if not path.is_absolute():
        return False
    return path.resolve().is_relative_to(settings.sidecar_dir.resolve())


def read_sidecar(settings: Settings, video_id: UUID) -> dict[str, Any]:
    """A video's current sidecar document from the configured store; ``FileNotFoundError`` when none."""
    if settings.storage_url:
        from pipeline.storage.versions import read_current_sidecar

        return read_current_sidecar(open_store(settings), video_id)  # type: ignore[arg-type]
    from pipeline.storage.sidecar import read_sidecar as read_local

    return read_local(settings.sidecar_dir, video_id)
