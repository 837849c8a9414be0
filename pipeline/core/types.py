"""Plain data passed between pipeline stages (probe -> scenes -> ranking -> CLIP -> storage)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Width of every stored embedding: the database column is scenes.embedding_visual_clip vector(512).
# The migrations' SQL spells the same number; tests/test_migrations.py checks they agree.
EMBEDDING_DIM = 512


@dataclass(frozen=True)
class ProbeResult:
    """What ffprobe says about the video stream.

    ``width``/``height`` are the stored (coded) frame size; ``rotation`` is the
    display rotation in degrees (0, 90, 180, 270). Frames vidx decodes are
    always upright, i.e. ``display_width`` x ``display_height``.
    """

    duration_s: float
    fps: float
    frame_count: int
    width: int
    height: int
    codec: str
    rotation: int = 0
    variable_frame_rate: bool = False

    @property
    def display_width(self) -> int:
        return self.height if self.rotation in (90, 270) else self.width

    @property
    def display_height(self) -> int:
        return self.width if self.rotation in (90, 270) else self.height

    def to_json(self) -> dict[str, Any]:
        """The sidecar's ``probe`` object."""
        return {
            "duration_s": round(self.duration_s, 3),
            "fps": round(self.fps, 3),
            "frame_count": self.frame_count,
            "width": self.width,
            "height": self.height,
            "codec": self.codec,
            "rotation": self.rotation,
        }


@dataclass(frozen=True)
class SceneSpan:
    """One shot: frames ``start_frame..end_frame`` inclusive, 0-based in decode order.

    ``end_s`` is where the next scene starts (the end of ``end_frame``'s
    display interval), so consecutive scenes tile the timeline exactly.
    """

    index: int
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float


@dataclass
class Candidate:
    """A decoded frame that may become its scene's best frame (RGB uint8, HxWx3)."""

    frame: int
    time_s: float
    image: np.ndarray


@dataclass
class DetectedScene:
    """A scene as scene detection yields it: its span and its candidate frames."""

    span: SceneSpan
    candidates: list[Candidate] = field(default_factory=list)


@dataclass(frozen=True)
class FrameQuality:
    """Quality of one frame: overall score in [0, 1] plus the components behind it.

    ``rejected`` names why a frame is unusable (``"black"``, ``"uniform"``,
    ``"blurred"``, ...) or is None; rejected frames only win when every
    candidate of a scene is rejected.
    """

    quality_score: float
    sharpness: float
    exposure: float
    contrast: float
    colorfulness: float
    rejected: str | None = None
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class SceneFrame:
    """One of a scene's embedded frames (``VIDX_FRAMES_PER_SCENE`` > 1): a JPEG beside the sidecar.

    ``embedding`` is this frame's own vector, filled in once the frames are embedded.
    """

    frame: int
    time_s: float
    path: str  # file name inside the sidecar directory
    quality: FrameQuality
    embedding: list[float] | None = None


@dataclass
class EmbeddingResult:
    """One scene's CLIP outcome: a vector, or None and ``metadata['error']`` saying why."""

    vector: list[float] | None
    metadata: dict[str, Any]


@dataclass
class SceneRecord:
    """One indexed scene as the sidecar and the ``scenes`` table hold it.

    Serialised only by :mod:`pipeline.core.scene_schema` (sidecar, ``--json`` and API alike).
    """

    index: int
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    best_frame: int
    best_time_s: float
    frame_path: str
    frame_quality: FrameQuality
    embedding: list[float] | None
    visual_clip_metadata: dict[str, Any]
    # Which model made ``embedding`` (pipeline/clip/identity.py); None when there is none.
    embedding_model: str | None = None
    # Top zero-shot labels, [{"label": str, "score": float}, ...] descending; None when not computed.
    labels: list[dict[str, Any]] | None = None
    # A short phrase ranked from vocabularies (not a caption); None when not computed.
    description: str | None = None
    # With VIDX_FRAMES_PER_SCENE > 1: the embedded frames, best first; None otherwise.
    frames: list[SceneFrame] | None = None
