"""A video's name: the stable label of its source and the id derived from it.

Light on purpose: enqueueing names videos without loading the indexer, OpenCV or torch.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from uuid import UUID

from pipeline.core.redaction import redact_url
from pipeline.intake.sources import is_url

_VIDEO_NAMESPACE = uuid.UUID("6f1d2a4e-6c55-4d0c-9a57-2a9a3f0f7c11")


def canonical_source(path_or_url: str) -> str:
    """The stable label of a source: URLs redacted (no user-info, query or fragment), local paths made absolute.

    The label is what is stored, shown and logged, and what the video id is
    derived from: re-signing a presigned URL keeps the same video.
    """
    if is_url(path_or_url, supported_only=False):
        return redact_url(path_or_url)
    return str(Path(path_or_url).expanduser().resolve())


def video_id_for(owner_id: UUID, source_label: str) -> UUID:
    """Deterministic video id, so indexing the same source again replaces it."""
    return uuid.uuid5(_VIDEO_NAMESPACE, f"{owner_id}:{source_label}")
