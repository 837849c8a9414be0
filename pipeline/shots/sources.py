"""Where the detection loop's frames come from: the interface every frame source implements.

Two sources exist: a full decode of every frame (pipeline.shots.full_decode)
and the reference frames of a stream with B-frames, held over the skipped
ones (pipeline.shots.reference_frames). Both hand over features on the
display clock, so one loop (pipeline.shots.scenes) and one detector serve both.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pipeline.core.errors import BadInputError
from pipeline.core.log import get_logger
from pipeline.core.types import Candidate
from pipeline.shots.boundary import ShotBoundary
from pipeline.shots.features import FrameFeatures

log = get_logger(__name__)

# Decoding that stops before this share of the expected frames is a truncated/corrupt stream.
_COMPLETE_SHARE = 0.9


@dataclass
class SourceBatch:
    """The next display frames' features (None while a source still holds them back) and the samples among them."""

    features: FrameFeatures | None
    samples: list[Candidate]


@dataclass(frozen=True)
class StreamEnd:
    """How a decode ended: the display frames in the stream, and features held back until the end was known."""

    frames: int
    tail: FrameFeatures | None


class Timeline(Protocol):
    """Display times of frames, as scene times (the first frame at its own timestamp)."""

    def at(self, frame: int) -> float:
        """When ``frame`` is shown."""
        ...

    def end(self) -> float:
        """Where the last frame's display interval ends."""
        ...


class FrameSource(Protocol):
    """One pass over a video's frames for the detection loop; always ``close()`` it."""

    name: str  # for logs

    @property
    def timeline(self) -> Timeline: ...

    def batches(self) -> Iterator[SourceBatch]:
        """Features of consecutive display frames from frame 0 on, with candidate samples, in order."""
        ...

    def progress(self) -> float | None:
        """Share of the video read so far (None when unknown)."""
        ...

    def finish(self) -> StreamEnd:
        """After ``batches()``: raises BadInputError when the stream decoded no frame or stopped early."""
        ...

    def place(self, boundary: ShotBoundary) -> ShotBoundary:
        """``boundary`` on its exact frame, for one that will end a scene (frames the source skipped)."""
        ...

    def close(self) -> None: ...


def check_complete(source: Path, frames: int, expected: int, code: int, errors: str) -> None:
    """Refuse a stream that decoded nothing or stopped early; every message starts with the file."""
    detail = f" ({errors})" if errors else ""
    if frames == 0:
        raise BadInputError(f"{source}: no video frames could be decoded{detail}")
    if code != 0 or (expected > 0 and frames < _COMPLETE_SHARE * expected):
        approx = f" of ~{expected}" if expected > 0 else ""
        raise BadInputError(f"{source}: corrupt video stream: decoding stopped at frame {frames}{approx}{detail}")
    if errors:
        log.warning("decoder_errors_concealed", source=str(source), errors=errors)
