"""What embedding takes and records, free of torch.

Kept apart from the model code so that a process with ``CLIP_ENABLED=false``
(or one that only builds metadata) never imports torch (~1.5 s, ~0.75 GB).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.core.config import Settings
from pipeline.core.types import EmbeddingResult

DISABLED_MESSAGE = "CLIP disabled (CLIP_ENABLED=false)"
BATCH_SIZE = 16  # scenes per forward pass


@dataclass(frozen=True)
class FrameToEmbed:
    """A scene's best frame: its JPEG and its quality (``scene_schema.quality_json``).

    ``label`` is what ``visual_clip_metadata.frame_path`` records (e.g. the
    sidecar-relative ``scene_0000.jpg``); default ``str(path)``.
    """

    path: Path
    quality: dict
    label: str | None = None

    @property
    def frame_label(self) -> str:
        return self.label if self.label is not None else str(self.path)


def weights_label(settings: Settings) -> str:
    """Where the weights come from, as recorded in ``visual_clip_metadata.pretrained``."""
    return str(settings.clip_checkpoint) if settings.clip_checkpoint else settings.clip_pretrained


def quality_score(quality: Any) -> float | None:
    """The frame's ``quality_score`` from its quality dict (or a ``FrameQuality``), None if absent."""
    if isinstance(quality, dict):
        return quality.get("quality_score")
    return getattr(quality, "quality_score", None)


def clip_metadata(
    settings: Settings,
    frame: FrameToEmbed,
    *,
    embed_dim: int | None,
    device: str,
    inference_time_ms: float | None,
    error: str | None,
) -> dict[str, Any]:
    """``visual_clip_metadata``, exactly the contract's keys; ``frame_quality`` is the quality_score."""
    return {
        "model_name": settings.clip_model_name,
        "pretrained": weights_label(settings),
        "embed_dim": embed_dim,
        "normalized": settings.clip_normalize,
        "device": device,
        "frame_path": frame.frame_label,
        "frame_quality": quality_score(frame.quality),
        "inference_time_ms": inference_time_ms,
        "created_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "error": error,
    }


def disabled_results(frames: Sequence[FrameToEmbed], settings: Settings) -> list[EmbeddingResult]:
    """NULL embeddings saying CLIP is disabled; the configured device is recorded as set."""
    return [
        EmbeddingResult(
            vector=None,
            metadata=clip_metadata(
                settings, frame, embed_dim=None, device=settings.clip_device, inference_time_ms=None,
                error=DISABLED_MESSAGE,
            ),
        )
        for frame in frames
    ]
