"""CLIP embedding of each scene's best frame (open_clip), one model per process.

See docs/clip.md. The model is loaded lazily on first use, never at import;
torch itself is imported only when something needs the model, so a process
with ``CLIP_ENABLED=false`` never pays for it (names resolve lazily, PEP 562).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

from pipeline.clip.frames import BATCH_SIZE, DISABLED_MESSAGE, FrameToEmbed, disabled_results
from pipeline.core.config import Settings
from pipeline.core.types import EmbeddingResult

_LAZY = {
    "ClipUnavailableError": "pipeline.clip.errors",
    "ClipModel": "pipeline.clip.model",
    "encode_image": "pipeline.clip.search",
    "encode_text": "pipeline.clip.search",
    "get_model": "pipeline.clip.singleton",
}

__all__ = ["BATCH_SIZE", "DISABLED_MESSAGE", "FrameToEmbed", "embed_frames", "reset_model", *_LAZY]


def embed_frames(
    frames: Sequence[FrameToEmbed], settings: Settings, *, batch_size: int = BATCH_SIZE
) -> list[EmbeddingResult]:
    """One result per frame, in order; NULL + reason on any failure (see pipeline/clip/embed.py)."""
    if not settings.clip_enabled:
        return disabled_results(frames, settings)
    from pipeline.clip.embed import embed_frames as embed_with_model  # torch: only when CLIP is on

    return embed_with_model(frames, settings, batch_size=batch_size)


def reset_model() -> None:
    """Drop this process's model (tests, reconfiguration); a no-op if torch was never loaded."""
    singleton = sys.modules.get("pipeline.clip.singleton")
    if singleton is not None:
        singleton.reset_model()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)  # torch: (most of) these load it, on first use
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
