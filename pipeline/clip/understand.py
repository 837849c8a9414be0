"""Labels and descriptions for embedded scenes: the hook the indexer and ``vidx reembed`` share.

Only a scene with an embedding gets them: with CLIP off, a failed embedding
or an unusable model, both stay None (never invented). Computing them never
fails a video: a model that cannot encode the vocabulary is logged and the
scenes keep their embeddings without labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.clip.describe import describe
from pipeline.clip.errors import ClipUnavailableError
from pipeline.clip.labels import text_bank, top_labels
from pipeline.core.config import Settings
from pipeline.core.log import get_logger
from pipeline.core.types import SceneRecord

log = get_logger(__name__)

Understanding = tuple[list[dict[str, Any]] | None, str | None]


def understand_vectors(vectors: Sequence[Sequence[float] | None], settings: Settings) -> list[Understanding]:
    """(labels, description) per vector, in order; (None, None) for a missing vector."""
    empty: list[Understanding] = [(None, None)] * len(vectors)
    if not settings.clip_enabled or settings.labels_top_k == 0 or all(v is None for v in vectors):
        return empty
    try:
        bank = text_bank(settings)
    except ClipUnavailableError as exc:
        log.warning("scene_labels_unavailable", error=str(exc)[:300])
        return empty
    out: list[Understanding] = []
    for vector in vectors:
        if vector is None:
            out.append((None, None))
            continue
        labels = top_labels(vector, bank, settings.labels_top_k)
        out.append((labels, describe(vector, bank, labels[0]["label"] if labels else None)))
    return out


def understand_records(records: Sequence[SceneRecord], settings: Settings) -> None:
    """Set ``labels`` and ``description`` of each record from its embedding (None without one)."""
    for record, (labels, description) in zip(
        records, understand_vectors([r.embedding for r in records], settings), strict=True
    ):
        record.labels, record.description = labels, description
