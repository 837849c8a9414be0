"""Turns a detector's boundaries into scenes that tile the video: minimum and maximum length, times, candidates."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pipeline.core.config import Settings
from pipeline.core.types import Candidate, DetectedScene, SceneSpan
from pipeline.media.decode import decode_frame_at
from pipeline.shots.boundary import ShotBoundary
from pipeline.shots.candidates import SampleReservoir, pick_candidates
from pipeline.shots.sources import Timeline


class SceneAssembler:
    """Closes scenes as boundaries arrive; candidates come from the samples in ``reservoir``."""

    def __init__(
        self, source: Path, settings: Settings, fps: float, sample_size: tuple[int, int], timeline: Timeline
    ) -> None:
        self.source = source
        self.settings = settings
        self.min_len = max(1, int(round(settings.min_scene_s * fps)))
        self.max_len = int(round(settings.max_scene_s * fps)) if settings.max_scene_s > 0 else 0
        self.sample_size = sample_size
        self.timeline = timeline
        self.reservoir = SampleReservoir(capacity=4 * settings.candidates_per_scene)
        self.start = 0
        self.start_s = 0.0
        self.start_guard = 0
        self.index = 0

    def closes_scene(self, b: ShotBoundary) -> bool:
        """Whether ``b`` would end the open scene (else it only guards frames of the same transition)."""
        return not b.joins_previous and b.frame - self.start >= self.min_len

    def boundary(self, b: ShotBoundary) -> Iterator[DetectedScene]:
        yield from self.split_long(b.frame)
        if not self.closes_scene(b):
            # Too close to the previous boundary: most likely the same transition
            # (a fade's two ends), so its frames stay off-limits for candidates.
            self.start_guard = max(self.start_guard, b.frame - self.start + b.guard)
            return
        yield self._close(b.frame, self.timeline.at(b.frame), b.guard, b.guard)

    def split_long(self, final_below: int) -> Iterator[DetectedScene]:
        """Split the open scene at max length while no boundary can still come before the split."""
        while self.max_len and self.start + self.max_len < final_below:
            at = self.start + self.max_len
            yield self._close(at, self.timeline.at(at), 0, 0)

    def finish(self, frames: int) -> Iterator[DetectedScene]:
        yield from self.split_long(frames)
        yield self._close(frames, self.timeline.end(), 0, 0)

    def _close(self, next_start: int, next_start_s: float, guard_end: int, next_guard: int) -> DetectedScene:
        end = next_start - 1
        samples = self.reservoir.take_before(next_start)
        cands = pick_candidates(samples, self.start, end, self.start_guard, guard_end,
                                self.settings.candidates_per_scene)
        if not cands:
            cands = self._fallback(self.start, end, self.start_s, next_start_s)
        span = SceneSpan(self.index, self.start, end, self.start_s, next_start_s)
        self.index += 1
        self.start, self.start_s, self.start_guard = next_start, next_start_s, next_guard
        return DetectedScene(span=span, candidates=cands)

    def _fallback(self, start: int, end: int, start_s: float, end_s: float) -> list[Candidate]:
        """A scene too short to hold a sample: decode its middle frame with a targeted seek."""
        mid_s = (start_s + end_s) / 2
        image = decode_frame_at(self.source, mid_s, self.sample_size, self.settings)
        return [] if image is None else [Candidate((start + end) // 2, mid_s, image)]
