"""Removing what killed runs left in object storage for one video (the local twin: ``pipeline.sidecar``)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from pipeline.storage.location import S3Location, is_object_url, parse_s3_url

if TYPE_CHECKING:
    from pipeline.config import Settings


def version_in_frame_path(location: S3Location, video_id: UUID, frame_path: str | None) -> str | None:
    """The version a stored ``frame_path`` URL points into (None when it is not one of this store's)."""
    if not frame_path or not is_object_url(frame_path):
        return None
    head = location.url(location.key(str(video_id))) + "/"
    rest = frame_path[len(head):] if frame_path.startswith(head) else ""
    return rest.split("/", 1)[0] if "/" in rest else None


def sweep_abandoned(settings: Settings, video_id: UUID, referenced_frame_path: str | None) -> list[str]:
    """Object storage only: delete versions and uploads of killed runs, keeping the one the rows point at.

    ``referenced_frame_path``: any ``frame_path`` of the video's current
    rows (None when it has none). Call under the claim on the video.
    """
    if not settings.storage_url:
        return []
    from pipeline.storage.s3 import S3Store
    from pipeline.storage.versions import sweep_video

    location = parse_s3_url(settings.storage_url)
    return sweep_video(S3Store(location), video_id, version_in_frame_path(location, video_id, referenced_frame_path))
