"""Frame source: the reference (I/P) frames of a stream with B-frames, held over the skipped frames.

The B-frames are never decoded (pipeline.media.reference, decoded in
parallel segments by pipeline.media.segments). Each reference frame's
features are held until the next one, so the detector runs on the display
clock as usual; a cut found between two reference frames is then placed on
its exact frame by decoding only the few frames in between.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.core.config import Settings
from pipeline.core.types import Candidate
from pipeline.media.decode import DecodeOptions
from pipeline.media.reference import PacketIndex, decode_range
from pipeline.media.segments import SegmentedDecode
from pipeline.shots.boundary import ShotBoundary, Transition
from pipeline.shots.detector import DetectorParams
from pipeline.shots.features import FrameFeatures, content_distance, frame_features
from pipeline.shots.sources import SourceBatch, StreamEnd, check_complete

# A flash on a reference frame is held until the next one (up to 4 frames with 3 B-frames);
# a zoom's steps and a cut's neighbours are counted in reference steps (about 3 frames each).
HELD_FRAME_PARAMS = dataclasses.replace(DetectorParams(), flash_max_frames=4, zoom_min_steps=2, cut_neighbours=9,
                                        held_frames=True)
# About a third of the frames are references with x264 defaults: sampling every third of the
# full decode's interval keeps candidates at about 4 a second.
_REFERENCE_SHARE = 3


class _IndexTimeline:
    """Display-order frame times from the packet index (decoder clock), for the scene assembler."""

    def __init__(self, index: PacketIndex, offset: float, fps: float) -> None:
        self.times = index.times - offset
        self.step = float(np.median(np.diff(self.times[-16:]))) if len(self.times) > 1 else 1.0 / fps

    def at(self, frame: int) -> float:
        return float(self.times[min(frame, len(self.times) - 1)])

    def end(self) -> float:
        return float(self.times[-1]) + max(self.step, 1e-6)


class _ReferencePlacer:
    """Places hard cuts found on held reference frames on their exact display frame."""

    def __init__(self, source: Path, index: PacketIndex, detect_size: tuple[int, int], settings: Settings) -> None:
        self.source = source
        self.settings = settings
        self.index = index
        self.detect_size = detect_size
        self.refs: list[int] = []  # display frame of each decoded reference frame, ascending

    def place(self, b: ShotBoundary) -> ShotBoundary:
        """A cut shows at the first frame of reference ``j``'s hold; the true cut is in (previous ref, j].

        The loop asks only for cuts that will end a scene: one that merely
        joins a transition (a fade's second end) keeps its frame and costs no decode.
        """
        if b.kind is not Transition.CUT:
            return b
        j = b.frame
        k = bisect.bisect_left(self.refs, j)
        i = self.refs[k - 1] if k >= 1 else j - 1
        if j - i <= 1 or self.index.keyframe[min(j, len(self.index.keyframe) - 1)]:
            return b  # no skipped frame in between, or the encoder put a keyframe on the cut
        return ShotBoundary(self._exact_cut(i, j), b.kind, b.guard, b.joins_previous)

    def _exact_cut(self, i: int, j: int) -> int:
        """The frame in (i, j] with the largest change from its predecessor (decoding only around i..j)."""
        frames, _ = decode_range(self.source, float(self.index.times[i]), j - i + 1, self.detect_size, self.settings)
        if len(frames) != j - i + 1:
            return j
        hist, grid, _ = frame_features(frames)
        change = content_distance(hist[:-1], grid[:-1], hist[1:], grid[1:])
        return i + 1 + int(np.argmax(change))


class _Hold:
    """Expands the features of decoded reference frames to every display frame by holding each until the next.

    The detector then runs on the display clock as usual: a cut shows as one
    jump, a dissolve or fade as a staircase with the same overall change.
    Features are computed once per reference frame and repeated, not
    recomputed on copies of the frame.
    """

    def __init__(self) -> None:
        self.pending: tuple[np.ndarray, FrameFeatures] | None = None  # the last reference, length unknown
        self.next_frame = 0

    def push(self, displays: np.ndarray, features: FrameFeatures) -> FrameFeatures | None:
        """Held features of every display frame now known: each reference's, up to the next one (None if none)."""
        if self.pending is not None:
            displays = np.concatenate([self.pending[0], displays])
            features = FrameFeatures(*(np.concatenate(pair) for pair in zip(self.pending[1], features, strict=True)))
        if not len(displays):
            return None
        self.pending = (displays[-1:], FrameFeatures(*(f[-1:] for f in features)))
        return self._repeat(displays[:-1], displays[1:], FrameFeatures(*(f[:-1] for f in features)))

    def finish(self, end: int) -> FrameFeatures | None:
        """The last reference held up to the end of the stream."""
        if self.pending is None:
            return None
        displays, features = self.pending
        self.pending = None
        return self._repeat(displays, np.array([end]), features)

    def _repeat(self, starts: np.ndarray, stops: np.ndarray, features: FrameFeatures) -> FrameFeatures | None:
        # The first reference starts where the previous output ended (frame 0 at first), so the
        # detector's frame numbers are display frame numbers even if the stream opens with skipped frames.
        starts = starts.copy()
        if len(starts):
            starts[0] = self.next_frame
        counts = np.maximum(0, stops - starts)
        if not counts.sum():
            return None
        self.next_frame = int(stops[counts > 0][-1])
        return FrameFeatures(*(np.repeat(f, counts, axis=0) for f in features))


class ReferenceFrames:
    """Reference frames only, decoded in parallel segments, held to the display clock; run with HELD_FRAME_PARAMS."""

    name = "reference frames"

    def __init__(
        self, source: Path, opts: DecodeOptions, settings: Settings, fps: float, expected: int, index: PacketIndex
    ) -> None:
        self.source = source
        self.total = len(index.times)
        self.expected = expected or self.total
        every = max(1, opts.sample_every // _REFERENCE_SHARE)
        opts = dataclasses.replace(opts, sample_every=every, reference_frames_only=True)
        self.decode = SegmentedDecode(source, index, opts, settings, settings.decode_workers())
        self.placer = _ReferencePlacer(source, index, opts.detect_size, settings)
        self.hold = _Hold()
        # Scene times count from the first frame, as the full decode's do (its clock starts there).
        self._timeline = _IndexTimeline(index, float(index.times[0]), fps)

    @property
    def timeline(self) -> _IndexTimeline:
        return self._timeline

    def batches(self) -> Iterator[SourceBatch]:
        for rb in self.decode.batches():
            self.placer.refs += rb.displays.tolist()
            samples = [Candidate(frame, self._timeline.at(frame), image) for frame, image in rb.samples]
            yield SourceBatch(self.hold.push(rb.displays, frame_features(rb.frames)), samples)

    def progress(self) -> float | None:
        return min(1.0, self.hold.next_frame / self.total)

    def finish(self) -> StreamEnd:
        decoded = self.placer.refs[-1] + 1 if self.placer.refs else 0
        check_complete(self.source, decoded, self.expected, self.decode.code, self.decode.error_summary())
        return StreamEnd(self.total, self.hold.finish(self.total))

    def place(self, boundary: ShotBoundary) -> ShotBoundary:
        return self.placer.place(boundary)

    def close(self) -> None:
        self.decode.close()
