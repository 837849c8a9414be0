"""Issue 12: shape transitions and fades through white are boundaries; light changes, shake and zooms are not.

Every video is made with ffmpeg (tests/videogen.py) so each boundary's
frames are known; the shots are lavfi patterns, so no test data is needed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline.shots.continuity import aligned_similarity, best_alignment
from pipeline.shots.detector import DetectorParams, ShotDetector
from pipeline.shots.features import frame_features
from tests import videogen
from tests.test_scenes import assert_tiles, in_boundary, run, starts
from tests.videogen import CUT, SOURCES, Shot, Transition

SIZE = (192, 108)


def _found_inside(path, boundaries, total) -> None:
    scenes = run(path)
    found = starts(scenes)[1:]
    assert len(found) == len(boundaries), (found, boundaries)
    for frame, truth in zip(found, boundaries, strict=True):
        assert in_boundary(frame, truth), (frame, truth)
    assert_tiles(scenes, total)


@pytest.mark.parametrize("kinds", [
    ["wipeleft", "wipetl", "wipeup"],
    ["slideleft", "slideup", "slidedown"],
    ["circleopen", "rectcrop", "radial"],
    ["fadewhite", "fadewhite", "fadeblack"],
])
def test_shape_transitions_and_fades_through_white_are_found_inside(tmp_path, kinds):
    shots = [Shot(SOURCES[i], n) for i, n in zip([0, 1, 5, 2], [60, 70, 65, 55], strict=True)]
    transitions = [Transition(k, 18) for k in kinds]
    path, boundaries, total = videogen.make_timeline(tmp_path / "shapes.mp4", shots, transitions, size=SIZE)
    _found_inside(path, boundaries, total)


@pytest.fixture(scope="module")
def camera_video(tmp_path_factory):
    """Hard cuts between shots holding a light switched on/off, hand-held shake and fast zooms."""
    shots = [
        Shot(videogen.with_light_step(SOURCES[0], 30, 0.25, warm=True), 65),
        Shot(videogen.with_shake(SOURCES[1], 0.06), 70),
        Shot(videogen.with_zoom(SOURCES[0], 25, 6, 2.5, out=True), 60),
        Shot(videogen.with_light_step(SOURCES[2], 25, -0.15, warm=False), 60),
        Shot(videogen.with_zoom(SOURCES[5], 30, 8, 2.0, out=False), 65),
    ]
    transitions = [CUT] * (len(shots) - 1)
    return videogen.make_timeline(tmp_path_factory.mktemp("camera") / "camera.mp4", shots, transitions, size=SIZE)


def test_light_changes_shake_and_fast_zooms_are_not_boundaries(camera_video):
    path, boundaries, total = camera_video
    scenes = run(path)
    assert starts(scenes) == [0, *(b.first for b in boundaries)]
    assert_tiles(scenes, total)


# --- unit: continuity, parameters --------------------------------------------------------------------


def _picture(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (12, 20)).astype(np.float32)
    return np.kron(small, np.ones((4, 4), np.float32))[:36, :64] + rng.normal(0, 2, (36, 64)).astype(np.float32)


def test_continuity_matches_moved_relit_and_zoomed_pictures_but_not_other_pictures():
    a = _picture(1)
    assert aligned_similarity(a, np.roll(a, 3, axis=1)) > 0.9  # shaken
    assert aligned_similarity(a, 0.6 * a + 70) > 0.95  # re-lit: gain and offset
    import cv2

    zoomed = cv2.resize(a, (80, 45))[4:40, 8:72]
    score, gain, scale = best_alignment(a, zoomed)
    assert score > 0.8 and gain > 0.05 and scale > 1
    assert best_alignment(a, np.roll(a, 2, axis=0))[1] < 0.05  # a shift needs no zoom
    assert aligned_similarity(a, _picture(2)) < 0.5
    assert aligned_similarity(a, np.full_like(a, 128)) == 0.0  # a flat field has no structure to match


def test_detector_params_are_one_frozen_place():
    params = DetectorParams()
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.cut_ratio = 1.0  # type: ignore[misc]
    rng = np.random.default_rng(0)
    a = np.kron(rng.integers(0, 256, (9, 16, 3)), np.ones((4, 4, 1))).astype(np.uint8)
    b = np.kron(rng.integers(0, 256, (9, 16, 3)), np.ones((4, 4, 1))).astype(np.uint8)
    frames = np.stack([a] * 30 + [b] * 30)

    def detect(p: DetectorParams) -> list[int]:
        det = ShotDetector(25.0, p)
        return [x.frame for x in det.push(*frame_features(frames)) + det.finish()]

    assert detect(params) == [30]
    assert detect(dataclasses.replace(params, cut_min_change=1.1, gradual_min_change=1.1)) == []


# --- the experimental reference-frame pass (VIDX_SHOT_REFERENCE_PASS) ----------------------------------


def test_reference_pass_places_hard_cuts_on_their_exact_frame(tmp_path):
    lengths = [40, 37, 52, 29, 45, 33]
    # No keyframe on the cuts (x264 scenecut off): cuts fall between references, so they are placed by decoding.
    shots = [Shot(SOURCES[i % len(SOURCES)], n) for i, n in enumerate(lengths)]
    path = videogen.make_video(tmp_path / "refcuts.mp4", shots, size=SIZE, extra=["-x264-params", "scenecut=0"])
    scenes = run(path, shot_reference_pass=True)
    assert starts(scenes) == [0, *videogen.cut_frames(lengths)]
    assert_tiles(scenes, sum(lengths))
    for s in scenes:
        for c in s.candidates:
            assert s.span.start_frame <= c.frame <= s.span.end_frame


def test_reference_pass_finds_the_cut_between_references_by_decoding_only_there(tmp_path):
    from pipeline.core.config import load_settings
    from pipeline.media.reference import decode_range, read_packet_index

    settings = load_settings({})
    path = videogen.make_cut_video(tmp_path / "two.mp4", [30, 30], size=SIZE)
    index = read_packet_index(path, settings)
    assert index is not None and index.has_b_frames and len(index.times) == 60
    frames, times = decode_range(path, float(index.times[10]), 5, (64, 36), settings)
    assert frames.shape == (5, 36, 64, 3)
    assert np.allclose(times, index.times[10:15])
