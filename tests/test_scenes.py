"""Scene detection on real ffmpeg-made videos where every boundary is known, plus detector unit tests."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.config import Settings
from pipeline.core.errors import BadInputError
from pipeline.core.types import Candidate, DetectedScene, ProbeResult
from pipeline.shots.candidates import SampleReservoir, pick_candidates
from pipeline.shots.detector import ShotDetector
from pipeline.shots.features import frame_features
from pipeline.shots.scenes import detect_scenes, sample_interval
from tests import videogen
from tests.videogen import CUT, SOURCES, Shot, Transition

SIZE = (192, 108)


def probe_of(path: Path) -> ProbeResult:
    info = videogen.probe_for_tests(path)
    return ProbeResult(**info)


def run(path: Path, **overrides) -> list[DetectedScene]:
    settings = Settings().with_overrides(**overrides)
    return list(detect_scenes(path, probe_of(path), settings))


def starts(scenes: list[DetectedScene]) -> list[int]:
    return [s.span.start_frame for s in scenes]


def assert_tiles(scenes: list[DetectedScene], total_frames: int) -> None:
    assert scenes[0].span.start_frame == 0 and scenes[0].span.start_s == 0.0
    assert scenes[-1].span.end_frame == total_frames - 1
    for i, (a, b) in enumerate(itertools.pairwise(scenes)):
        assert a.span.index == i and b.span.index == i + 1
        assert b.span.start_frame == a.span.end_frame + 1
        assert b.span.start_s == a.span.end_s
        assert a.span.start_s < a.span.end_s


def in_boundary(frame: int, b: videogen.Boundary) -> bool:
    return b.first <= frame <= b.last


# --- videos ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cuts_video(tmp_path_factory) -> tuple[Path, list[int]]:
    lengths = [30, 45, 25, 60, 40, 35, 30, 45]
    path = videogen.make_cut_video(tmp_path_factory.mktemp("scenes") / "cuts.mp4", lengths, size=SIZE)
    return path, lengths


@pytest.fixture(scope="module")
def gradual_video(tmp_path_factory):
    """cut, dissolve, fade through black, cut; the second shot has a fast pan."""
    shots = [
        Shot(SOURCES[0], 50),
        Shot(videogen.with_pan(SOURCES[1], 1.5), 60),
        Shot(SOURCES[5], 60),
        Shot(SOURCES[3], 55),
        Shot(SOURCES[4], 45),
    ]
    transitions = [CUT, Transition("dissolve", 14), Transition("fade", 20), CUT]
    return videogen.make_timeline(tmp_path_factory.mktemp("scenes") / "gradual.mp4", shots, transitions, size=SIZE)


@pytest.fixture(scope="module")
def distractor_video(tmp_path_factory):
    """Shots holding non-boundaries: 1- and 2-frame flashes, a fast pan, a passing occluder."""
    shots = [
        Shot(videogen.with_flash(SOURCES[0], 20, 1), 50),
        Shot(videogen.with_flash(SOURCES[1], 25, 2), 55),
        Shot(videogen.with_pan(SOURCES[5], 1.0), 75),
        Shot(videogen.with_occluder(SOURCES[7], 0.8, 0.6), 60),
        Shot(videogen.with_occluder(SOURCES[2], 0.6, 0.4, color="white"), 50),
    ]
    return videogen.make_timeline(tmp_path_factory.mktemp("scenes") / "distractors.mp4", shots, size=SIZE)


# --- boundaries ------------------------------------------------------------------------------------


def test_hard_cuts_land_on_the_exact_frame_and_scenes_tile(cuts_video):
    path, lengths = cuts_video
    scenes = run(path)
    assert starts(scenes) == [0, *videogen.cut_frames(lengths)]
    assert_tiles(scenes, sum(lengths))
    for s in scenes:  # constant 25 fps: times are frame / 25
        assert s.span.start_s == pytest.approx(s.span.start_frame / 25, abs=1e-6)
    assert scenes[-1].span.end_s == pytest.approx(sum(lengths) / 25, abs=1e-6)


def test_dissolve_and_fade_are_found_inside_the_transition(gradual_video):
    path, boundaries, total = gradual_video
    scenes = run(path)
    found = starts(scenes)[1:]
    assert len(found) == len(boundaries), (found, boundaries)
    for frame, truth in zip(found, boundaries, strict=True):
        assert in_boundary(frame, truth), (frame, truth)
    assert_tiles(scenes, total)


def test_flashes_pans_and_occluders_are_not_boundaries(distractor_video):
    path, boundaries, total = distractor_video
    scenes = run(path)
    assert starts(scenes) == [0, *(b.first for b in boundaries)]
    assert_tiles(scenes, total)


def test_min_scene_length_drops_boundaries_too_close(tmp_path):
    path = videogen.make_cut_video(tmp_path / "short.mp4", [40, 8, 40], size=SIZE)
    assert starts(run(path, min_scene_s=0.5)) == [0, 40]  # the 8-frame shot joins the one before
    assert starts(run(path, min_scene_s=0.2)) == [0, 40, 48]


def test_max_scene_length_splits_long_shots(tmp_path):
    path = videogen.make_cut_video(tmp_path / "long.mp4", [130, 30], size=SIZE)
    scenes = run(path, max_scene_s=2.0)
    assert starts(scenes) == [0, 50, 100, 130]
    assert_tiles(scenes, 160)
    assert starts(run(path, max_scene_s=0.0)) == [0, 130]


def test_variable_frame_rate_times_come_from_timestamps(tmp_path):
    parts = [(SOURCES[0], 40, 25), (SOURCES[1], 20, 10), (SOURCES[4], 30, 25)]
    path = videogen.make_vfr_video(tmp_path / "vfr.mp4", parts)
    scenes = run(path)
    assert starts(scenes) == [0, 40, 60]
    assert [round(s.span.start_s, 3) for s in scenes] == [0.0, 1.6, 3.6]
    pts = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "frame=pts_time",
                          "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True).stdout.split()
    assert scenes[-1].span.end_s == pytest.approx(float(pts[-1]) + 0.04, abs=1e-3)
    assert_tiles(scenes, len(pts))


# --- candidates ------------------------------------------------------------------------------------


def test_candidates_are_spread_upright_and_sized(cuts_video):
    path, lengths = cuts_video
    scenes = run(path, frame_height=64, candidates_per_scene=3)
    for s in scenes:
        assert 1 <= len(s.candidates) <= 3
        frames = [c.frame for c in s.candidates]
        assert frames == sorted(set(frames))
        for c in s.candidates:
            assert s.span.start_frame < c.frame < s.span.end_frame
            assert c.image.shape == (64, 114, 3) and c.image.dtype == np.uint8
            assert c.time_s == pytest.approx(c.frame / 25, abs=1e-6)
    # never upscaled beyond the source
    big = run(path, frame_height=720)[0].candidates[0].image
    assert big.shape == (SIZE[1], SIZE[0], 3)


def test_candidates_are_exactly_the_decoded_frames(cuts_video):
    path, _ = cuts_video
    scene = run(path, frame_height=SIZE[1])[2]
    for c in scene.candidates:
        ref = subprocess.run(
            ["ffmpeg", "-v", "error", "-i", str(path), "-vf", f"select=eq(n\\,{c.frame})", "-frames:v", "1",
             "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
        ref_img = np.frombuffer(ref, np.uint8).reshape(c.image.shape)
        assert np.abs(ref_img.astype(int) - c.image).mean() < 1.0


def test_candidates_avoid_the_transition_frames(gradual_video):
    path, boundaries, _ = gradual_video
    scenes = run(path)
    for s in scenes:
        for c in s.candidates:
            for b in boundaries:
                assert not (b.first <= c.frame <= b.last), (c.frame, b)


def test_rotated_video_gives_upright_candidates(tmp_path):
    src = videogen.make_cut_video(tmp_path / "flat.mp4", [30, 30], size=(160, 90))
    path = videogen.rotate_video(src, tmp_path / "rotated.mp4", 90)
    scenes = run(path, frame_height=64)
    assert starts(scenes) == [0, 30]
    assert scenes[0].candidates[0].image.shape == (64, 36, 3)


def test_progress_is_reported_up_to_one(cuts_video):
    path, _ = cuts_video
    seen: list[float] = []
    list(detect_scenes(path, probe_of(path), Settings(), on_progress=seen.append))
    assert seen and seen[-1] == 1.0 and all(0 <= p <= 1 for p in seen)
    assert seen == sorted(seen)


# --- bad input -------------------------------------------------------------------------------------


def test_truncated_stream_raises_bad_input(tmp_path):
    src = videogen.make_video(tmp_path / "whole.mp4", [Shot(SOURCES[0], 150)], size=SIZE,
                              extra=["-movflags", "+faststart"])
    data = src.read_bytes()
    cut = tmp_path / "truncated.mp4"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(BadInputError, match=r"corrupt video stream: decoding stopped at frame \d+ of ~150"):
        list(detect_scenes(cut, probe_of(src), Settings()))


def test_video_that_decodes_no_frame_raises_bad_input(tmp_path):
    src = videogen.make_video(tmp_path / "whole.mp4", [Shot(SOURCES[0], 50)], size=SIZE,
                              extra=["-movflags", "+faststart"])
    header_only = tmp_path / "header.mp4"
    header_only.write_bytes(src.read_bytes()[:2000])
    with pytest.raises(BadInputError, match="no video frames could be decoded"):
        list(detect_scenes(header_only, probe_of(src), Settings()))


# --- unit: detector, candidates ----------------------------------------------------------------------


def _noise_shot(seed: int, n: int, drift: float = 0.0) -> np.ndarray:
    """n small frames of one 'shot': a random blocky picture with a little noise (and optional drift)."""
    rng = np.random.default_rng(seed)
    base = np.kron(rng.integers(0, 256, (9, 16, 3)), np.ones((4, 4, 1))).astype(np.float32)
    frames = [np.roll(base, int(i * drift), axis=1) + rng.normal(0, 3, base.shape) for i in range(n)]
    return np.clip(frames, 0, 255).astype(np.uint8)


def _detect(frames: np.ndarray, fps: float = 25.0, batch: int = 16) -> list[tuple[int, str]]:
    det = ShotDetector(fps)
    out = []
    for i in range(0, len(frames), batch):
        out += det.push(*frame_features(frames[i: i + batch]))
    out += det.finish()
    return [(b.frame, b.kind) for b in out]


def test_detector_finds_a_cut_across_batches():
    frames = np.concatenate([_noise_shot(1, 37), _noise_shot(2, 40)])
    assert _detect(frames, batch=5) == [(37, "cut")]


def test_detector_ignores_a_one_frame_flash():
    frames = _noise_shot(1, 60)
    frames[30] = 255
    assert _detect(frames) == []


def test_detector_ignores_steady_camera_motion():
    assert _detect(_noise_shot(3, 80, drift=3.0)) == []


def test_detector_places_a_dissolve_inside_it():
    a, b = _noise_shot(1, 60).astype(np.float32), _noise_shot(2, 60).astype(np.float32)
    alpha = np.clip((np.arange(60) - 25) / 10, 0, 1)[:, None, None, None]  # frames 26..34 mix
    frames = ((1 - alpha) * a + alpha * b).astype(np.uint8)
    found = _detect(frames)
    assert len(found) == 1 and 25 <= found[0][0] <= 35


def test_reservoir_stays_bounded_and_spread():
    res = SampleReservoir(capacity=8)
    img = np.zeros((2, 2, 3), np.uint8)
    for f in range(0, 1000, 5):
        res.add(Candidate(f, f / 25, img), settled_below=f)
    kept = res.take_before(10**6)
    assert len(kept) <= 9
    assert kept[0].frame < 200 and kept[-1].frame > 800


def test_pick_candidates_avoids_guards_and_edges():
    samples = [Candidate(f, f / 25, np.zeros((1, 1, 3), np.uint8)) for f in range(0, 100, 5)]
    picked = pick_candidates(samples, 0, 99, guard_start=1, guard_end=20, count=3)
    assert len(picked) == 3 and all(10 <= c.frame <= 79 for c in picked)
    assert pick_candidates(samples[:1], 0, 3, 1, 1, 3) == samples[:1]  # last resort: the only one


def test_sample_interval_gives_short_scenes_samples():
    assert sample_interval(25, 0.5) == 6
    assert sample_interval(25, 0.2) == 2
    assert sample_interval(60, 0.0) == 3
