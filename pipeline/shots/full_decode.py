"""Frame source: every frame, from one streaming ffmpeg decode (pipeline.media.decode)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.core.config import Settings
from pipeline.core.types import Candidate
from pipeline.media.decode import DecodeOptions, FrameStream
from pipeline.shots.boundary import ShotBoundary
from pipeline.shots.features import frame_features
from pipeline.shots.sources import SourceBatch, StreamEnd, check_complete

BATCH_FRAMES = 128


class _Timeline:
    """Timestamps of the most recent frames (enough to cover the detector's look-back)."""

    def __init__(self, fps: float, keep: int) -> None:
        self.fps = fps
        self.keep = keep
        self.base = 0
        self.times = np.zeros(0)
        self.last_step = 1.0 / fps

    def add(self, first: int, times: np.ndarray) -> None:
        times = times.copy()
        bad = ~np.isfinite(times)
        if bad.any():
            times[bad] = (first + np.flatnonzero(bad)) / self.fps
        if len(times) > 1:
            self.last_step = float(np.median(np.diff(times[-8:]))) or self.last_step
        self.times = np.concatenate([self.times, times])
        if len(self.times) > self.keep:
            drop = len(self.times) - self.keep
            self.times = self.times[drop:]
            self.base += drop

    def at(self, frame: int) -> float:
        i = frame - self.base
        if 0 <= i < len(self.times):
            return float(self.times[i])
        return frame / self.fps  # pragma: no cover - outside the kept window

    def end(self) -> float:
        """Where the last frame's display interval ends."""
        return float(self.times[-1]) + max(self.last_step, 1e-6) if len(self.times) else 0.0


class DecodedFrames:
    """Every frame in decode order, with its real timestamp; ``history`` frames of times are kept."""

    name = "full decode"

    def __init__(
        self, source: Path, opts: DecodeOptions, settings: Settings, fps: float, expected: int, history: int
    ) -> None:
        self.source = source
        self.expected = expected  # frames the probe promised (0: unknown)
        self.stream = FrameStream(source, opts, batch_frames=BATCH_FRAMES, settings=settings)
        self._timeline = _Timeline(fps, keep=history + 2 * BATCH_FRAMES + 16)

    @property
    def timeline(self) -> _Timeline:
        return self._timeline

    def batches(self) -> Iterator[SourceBatch]:
        for fb in self.stream.batches():
            self._timeline.add(fb.first, fb.times)
            samples = [Candidate(frame, self._timeline.at(frame), image) for frame, image in fb.samples]
            yield SourceBatch(frame_features(fb.frames), samples)

    def progress(self) -> float | None:
        return min(1.0, self.stream.frames_read / self.expected) if self.expected > 0 else None

    def finish(self) -> StreamEnd:
        code = self.stream.finish()
        frames = self.stream.frames_read
        check_complete(self.source, frames, self.expected, code, self.stream.error_summary())
        return StreamEnd(frames, None)

    def place(self, boundary: ShotBoundary) -> ShotBoundary:
        return boundary  # every frame was seen: boundaries are exact already

    def close(self) -> None:
        self.stream.close()
