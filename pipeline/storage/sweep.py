"""Removing what killed runs left in object storage for one video (the local twin: ``pipeline.storage.sidecar``)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from pipeline.core.locations import parse_s3_url

if TYPE_CHECKING:
    from pipeline.core.config import Settings


def sweep_abandoned(settings: Settings, video_id: UUID, db_version: str | None) -> list[str]:
    """Object storage only: delete versions and uploads of killed runs, keeping the one the rows point at.

    ``db_version``: ``videos.sidecar_version`` (None when no run finished).
    Call under the claim on the video (the worker's ``sweep_claimed``).
    """
    if not settings.storage_url:
        return []
    from pipeline.storage.s3 import S3Store
    from pipeline.storage.versions import sweep_video

    location = parse_s3_url(settings.storage_url)
    return sweep_video(S3Store(location), video_id, db_version)
