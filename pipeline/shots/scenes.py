"""Scene (shot) detection: one streaming decode, shots out as they close.

ffmpeg decodes the video once (pipeline.media.decode), writing tiny frames for
the detector and, every few frames, a properly decoded analysis-size
frame for candidate sampling. The detector (pipeline.shots.detector)
returns boundaries in order; each closed scene is yielded at once with its
candidates, so memory stays flat for any video length.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from pipeline.core.config import Settings
from pipeline.core.errors import BadInputError
from pipeline.core.log import get_logger
from pipeline.core.types import Candidate, DetectedScene, ProbeResult, SceneSpan
from pipeline.media.decode import DecodeOptions, FrameStream, decode_frame_at, detection_size, scaled_size
from pipeline.media.reference import PacketIndex, decode_range, read_packet_index
from pipeline.media.segments import SegmentedDecode
from pipeline.shots.candidates import SampleReservoir, pick_candidates
from pipeline.shots.detector import DetectorParams, ShotBoundary, ShotDetector
from pipeline.shots.features import content_distance, frame_features

log = get_logger(__name__)

# Decoding that stops before this share of the expected frames is a truncated/corrupt stream.
_COMPLETE_SHARE = 0.9
_SAMPLES_PER_S = 4.0


def sample_interval(fps: float, min_scene_s: float) -> int:
    """Frames between candidate samples: about 4 a second, and at least two per shortest scene."""
    per_scene = max(min_scene_s, 0.1) / 2
    return max(1, int(round(fps * min(1.0 / _SAMPLES_PER_S, per_scene))))


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


class _SceneAssembler:
    """Turns boundaries into tiling scenes: minimum and maximum length, times, candidates."""

    def __init__(
        self, source: Path, settings: Settings, fps: float, sample_size: tuple[int, int], timeline: _Timeline
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


def detect_scenes(
    source: Path,
    probe: ProbeResult,
    settings: Settings,
    on_progress: Callable[[float], None] | None = None,
) -> Iterator[DetectedScene]:
    """Yield the video's scenes in order as they close (see docs/scenes.md).

    Raises BadInputError when the stream decodes no frame or stops early.
    """
    if settings.shot_reference_pass:
        index = read_packet_index(source, settings)
        if index is not None and index.has_b_frames:
            yield from _detect_on_reference_frames(source, probe, settings, index, on_progress)
            return
    fps = probe.fps if probe.fps and probe.fps > 0 else 25.0
    width, height = probe.display_width, probe.display_height
    sample_size = scaled_size(width, height, settings.frame_height)
    opts = DecodeOptions(
        detect_size=detection_size(width, height),
        sample_size=sample_size,
        sample_every=sample_interval(fps, settings.min_scene_s),
    )
    detector = ShotDetector(fps)
    batch = 128
    timeline = _Timeline(fps, keep=detector.lookback + detector.lookahead + 2 * batch + 16)
    scenes = _SceneAssembler(source, settings, fps, sample_size, timeline)
    expected = probe.frame_count or int(probe.duration_s * fps)

    with FrameStream(source, opts, batch_frames=batch, settings=settings) as stream:
        for fb in stream.batches():
            timeline.add(fb.first, fb.times)
            for frame, image in fb.samples:
                scenes.reservoir.add(Candidate(frame, timeline.at(frame), image), detector.final_below)
            for b in detector.push(*frame_features(fb.frames)):
                yield from scenes.boundary(b)
            yield from scenes.split_long(detector.final_below)
            if on_progress and expected > 0:
                on_progress(min(1.0, stream.frames_read / expected))
        code = stream.finish()
        frames = stream.frames_read
        _check_complete(source, frames, expected, code, stream.error_summary())
        for b in detector.finish():
            yield from scenes.boundary(b)
        yield from scenes.finish(frames)
    if on_progress:
        on_progress(1.0)
    log.debug("scenes_detected", source=str(source), frames=frames, scenes=scenes.index)


def _check_complete(source: Path, frames: int, expected: int, code: int, errors: str) -> None:
    """Every message starts with the file, whatever ffmpeg's own words happen to hold."""
    detail = f" ({errors})" if errors else ""
    if frames == 0:
        raise BadInputError(f"{source}: no video frames could be decoded{detail}")
    if code != 0 or (expected > 0 and frames < _COMPLETE_SHARE * expected):
        approx = f" of ~{expected}" if expected > 0 else ""
        raise BadInputError(f"{source}: corrupt video stream: decoding stopped at frame {frames}{approx}{detail}")
    if errors:
        log.warning("decoder_errors_concealed", source=str(source), errors=errors)


# --- reference frames only (streams with B-frames; see pipeline/media/reference.py) ---------------------------


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

    def place(self, b: ShotBoundary, scenes: _SceneAssembler) -> ShotBoundary:
        """A cut shows at the first frame of reference ``j``'s hold; the true cut is in (previous ref, j].

        Only cuts that will end a scene are placed: one that merely joins a
        transition (a fade's second end) keeps its frame and costs no decode.
        """
        if b.kind != "cut" or not scenes.closes_scene(b):
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
        self.pending: tuple[np.ndarray, tuple[np.ndarray, ...]] | None = None  # the last reference, length unknown
        self.next_frame = 0

    def push(self, displays: np.ndarray, features: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...] | None:
        """Held features of every display frame now known: each reference's, up to the next one (None if none)."""
        if self.pending is not None:
            displays = np.concatenate([self.pending[0], displays])
            features = tuple(np.concatenate(pair) for pair in zip(self.pending[1], features, strict=True))
        if not len(displays):
            return None
        self.pending = (displays[-1:], tuple(f[-1:] for f in features))
        return self._repeat(displays[:-1], displays[1:], tuple(f[:-1] for f in features))

    def finish(self, end: int) -> tuple[np.ndarray, ...] | None:
        """The last reference held up to the end of the stream."""
        if self.pending is None:
            return None
        displays, features = self.pending
        self.pending = None
        return self._repeat(displays, np.array([end]), features)

    def _repeat(self, starts: np.ndarray, stops: np.ndarray, features: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...] | None:
        # The first reference starts where the previous output ended (frame 0 at first), so the
        # detector's frame numbers are display frame numbers even if the stream opens with skipped frames.
        starts = starts.copy()
        if len(starts):
            starts[0] = self.next_frame
        counts = np.maximum(0, stops - starts)
        if not counts.sum():
            return None
        self.next_frame = int(stops[counts > 0][-1])
        return tuple(np.repeat(f, counts, axis=0) for f in features)


def _detect_on_reference_frames(
    source: Path,
    probe: ProbeResult,
    settings: Settings,
    index: PacketIndex,
    on_progress: Callable[[float], None] | None,
) -> Iterator[DetectedScene]:
    """detect_scenes for streams with B-frames: decode I/P frames only, hold them, place each cut exactly."""
    fps = probe.fps if probe.fps and probe.fps > 0 else 25.0
    width, height = probe.display_width, probe.display_height
    sample_size = scaled_size(width, height, settings.frame_height)
    detect_size = detection_size(width, height)
    total = len(index.times)
    # About a third of the frames are references with x264 defaults; samples stay ~4 a second.
    every = max(1, sample_interval(fps, settings.min_scene_s) // 3)
    opts = DecodeOptions(detect_size=detect_size, sample_size=sample_size, sample_every=every,
                         reference_frames_only=True)
    # A flash on a reference frame is held until the next one (up to 4 frames with 3 B-frames);
    # a zoom's steps and a cut's neighbours are counted in reference steps (about 3 frames each).
    detector = ShotDetector(fps, dataclasses.replace(DetectorParams(), flash_max_frames=4, zoom_min_steps=2,
                                                     cut_neighbours=9, held_frames=True))
    placer = _ReferencePlacer(source, index, detect_size, settings)
    hold = _Hold()
    # Scene times count from the first frame, as the full decode's do (its clock starts there).
    timeline = _IndexTimeline(index, float(index.times[0]), fps)
    scenes = _SceneAssembler(source, settings, fps, sample_size, timeline)  # type: ignore[arg-type]
    with SegmentedDecode(source, index, opts, settings, settings.decode_workers()) as decode:
        for rb in decode.batches():
            placer.refs += rb.displays.tolist()
            for frame, image in rb.samples:
                scenes.reservoir.add(Candidate(frame, timeline.at(frame), image), detector.final_below)
            held = hold.push(rb.displays, frame_features(rb.frames))
            if held is not None:
                for b in detector.push(*held):
                    yield from scenes.boundary(placer.place(b, scenes))
            yield from scenes.split_long(detector.final_below)
            if on_progress:
                on_progress(min(1.0, hold.next_frame / total))
        decoded = placer.refs[-1] + 1 if placer.refs else 0
        _check_complete(source, decoded, probe.frame_count or total, decode.code, decode.error_summary())
        tail = hold.finish(total)
        if tail is not None:
            for b in detector.push(*tail):
                yield from scenes.boundary(placer.place(b, scenes))
        for b in detector.finish():
            yield from scenes.boundary(placer.place(b, scenes))
        yield from scenes.finish(total)
    if on_progress:
        on_progress(1.0)
    log.debug("scenes_detected", source=str(source), frames=total, scenes=scenes.index, reference_pass=True)
