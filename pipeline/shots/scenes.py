"""Scene (shot) detection: one loop over a frame source, shots out as they close.

A frame source (pipeline.shots.sources) decodes the video once: every
frame (full decode), or the reference frames of a stream with B-frames
held over the skipped ones (``VIDX_SHOT_REFERENCE_PASS``). It hands over
features for the detector (pipeline.shots.detector, behind the
pipeline.shots.boundary.Detector interface) and, every few frames, a
properly decoded analysis-size frame for candidate sampling. Each closed
scene is yielded at once with its candidates, so memory stays flat for
any video length.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from pipeline.core.config import Settings
from pipeline.core.log import get_logger
from pipeline.core.types import DetectedScene, ProbeResult
from pipeline.media.decode import DecodeOptions, detection_size, scaled_size
from pipeline.media.reference import read_packet_index
from pipeline.shots.assembler import SceneAssembler
from pipeline.shots.boundary import Detector, ShotBoundary
from pipeline.shots.detector import ShotDetector
from pipeline.shots.full_decode import DecodedFrames
from pipeline.shots.reference_frames import HELD_FRAME_PARAMS, ReferenceFrames
from pipeline.shots.sources import FrameSource

log = get_logger(__name__)

_SAMPLES_PER_S = 4.0


def sample_interval(fps: float, min_scene_s: float) -> int:
    """Frames between candidate samples: about 4 a second, and at least two per shortest scene."""
    per_scene = max(min_scene_s, 0.1) / 2
    return max(1, int(round(fps * min(1.0 / _SAMPLES_PER_S, per_scene))))


def detect_scenes(
    source: Path,
    probe: ProbeResult,
    settings: Settings,
    on_progress: Callable[[float], None] | None = None,
) -> Iterator[DetectedScene]:
    """Yield the video's scenes in order as they close (see docs/scenes.md).

    Raises BadInputError when the stream decodes no frame or stops early.
    """
    fps = probe.fps if probe.fps and probe.fps > 0 else 25.0
    width, height = probe.display_width, probe.display_height
    sample_size = scaled_size(width, height, settings.frame_height)
    opts = DecodeOptions(detect_size=detection_size(width, height), sample_size=sample_size,
                         sample_every=sample_interval(fps, settings.min_scene_s))
    index = read_packet_index(source, settings) if settings.shot_reference_pass else None
    frames: FrameSource
    if index is not None and index.has_b_frames:
        detector = ShotDetector(fps, HELD_FRAME_PARAMS)
        frames = ReferenceFrames(source, opts, settings, fps, probe.frame_count, index)
    else:
        detector = ShotDetector(fps)
        expected = probe.frame_count or int(probe.duration_s * fps)
        frames = DecodedFrames(source, opts, settings, fps, expected, history=detector.lookback + detector.lookahead)
    scenes = SceneAssembler(source, settings, fps, sample_size, frames.timeline)
    try:
        yield from _detect(frames, detector, scenes, on_progress)
    finally:
        frames.close()
    if on_progress:
        on_progress(1.0)
    log.debug("scenes_detected", source=str(source), frames=scenes.start, scenes=scenes.index,
              frame_source=frames.name)


def _detect(
    frames: FrameSource, detector: Detector, scenes: SceneAssembler, on_progress: Callable[[float], None] | None
) -> Iterator[DetectedScene]:
    """The detection loop: features into the detector, samples into the reservoir, boundaries into scenes."""
    for batch in frames.batches():
        for sample in batch.samples:
            scenes.reservoir.add(sample, detector.final_below)
        if batch.features is not None:
            yield from _boundaries(detector.push(*batch.features), frames, scenes)
        yield from scenes.split_long(detector.final_below)
        progress = frames.progress()
        if on_progress and progress is not None:
            on_progress(progress)
    end = frames.finish()
    if end.tail is not None:
        yield from _boundaries(detector.push(*end.tail), frames, scenes)
    yield from _boundaries(detector.finish(), frames, scenes)
    yield from scenes.finish(end.frames)


def _boundaries(found: Iterable[ShotBoundary], frames: FrameSource, scenes: SceneAssembler) -> Iterator[DetectedScene]:
    """Scenes closed by ``found``; a boundary that will end a scene is first placed on its exact frame."""
    for b in found:
        yield from scenes.boundary(frames.place(b) if scenes.closes_scene(b) else b)
