"""What any shot detector reports, and the interface a detector implements.

In the style of PySceneDetect's ``SceneDetector`` (process a frame, return
cuts; post-process at the stream's end), but batched: features of many
frames go in at once, and boundaries come out in frame order once they
are final.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Transition(enum.StrEnum):
    """How one shot gives way to the next (a string, so it logs and compares as its name)."""

    CUT = "cut"
    GRADUAL = "gradual"  # a dissolve, fade, wipe, slide...


@dataclass(frozen=True)
class ShotBoundary:
    """A new shot starts at ``frame``; ``guard`` frames either side may be transition frames."""

    frame: int
    kind: Transition
    guard: int
    joins_previous: bool = False  # the far end of the previous transition (a fade's return from black)


class Detector(Protocol):
    """Finds shot boundaries in per-frame features (pipeline.shots.features), streaming."""

    @property
    def final_below(self) -> int:
        """Every boundary before this frame has been returned: frames below it are settled."""
        ...

    def push(self, hist: np.ndarray, grid: np.ndarray, luma: np.ndarray | None = None) -> list[ShotBoundary]:
        """Add the next frames' features; returns the boundaries now final, in frame order."""
        ...

    def finish(self) -> list[ShotBoundary]:
        """The stream ended: the remaining boundaries."""
        ...
