"""Streaming decode: sizes, frame counts, timestamps and samples straight from ffmpeg pipes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.media.decode import SAMPLE_SCALE_FLAGS, DecodeOptions, FrameStream, decode_frame_at, detection_size, scaled_size
from tests import videogen


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """160x90, 25 fps, 60 frames, a cut at 30."""
    return videogen.make_cut_video(tmp_path_factory.mktemp("decode") / "clip.mp4", [30, 30], size=(160, 90))


def reference_frame(path: Path, n: int, size: tuple[int, int]) -> np.ndarray:
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path),
         "-vf", f"select=eq(n\\,{n}),scale={size[0]}:{size[1]}:flags={SAMPLE_SCALE_FLAGS}",
         "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(out, np.uint8).reshape(size[1], size[0], 3)


def test_sizes_keep_aspect_stay_even_and_never_upscale():
    assert scaled_size(1920, 1080, 360) == (640, 360)
    assert scaled_size(1080, 1920, 360) == (202, 360)
    assert scaled_size(320, 180, 360) == (320, 180)
    assert scaled_size(101, 75, 360) == (100, 74)
    assert detection_size(1920, 1080) == (64, 36)
    assert detection_size(1080, 1920) == (64, 114)
    assert detection_size(40, 30) == (40, 30)


def test_stream_yields_every_frame_with_its_timestamp(clip):
    opts = DecodeOptions(detect_size=(32, 18))
    with FrameStream(clip, opts, batch_frames=16) as stream:
        batches = list(stream.batches())
        assert stream.finish() == 0
    frames = np.concatenate([b.frames for b in batches])
    times = np.concatenate([b.times for b in batches])
    assert frames.shape == (60, 18, 32, 3)
    assert [b.first for b in batches] == [0, 16, 32, 48]
    np.testing.assert_allclose(times, np.arange(60) / 25, atol=1e-6)


def test_samples_are_the_right_frames_at_full_quality(clip):
    opts = DecodeOptions(detect_size=(32, 18), sample_size=(160, 90), sample_every=7)
    with FrameStream(clip, opts, batch_frames=10) as stream:
        samples = [s for b in stream.batches() for s in b.samples]
    assert [f for f, _ in samples] == list(range(0, 60, 7))
    for frame, image in samples[::3]:
        assert np.abs(image.astype(int) - reference_frame(clip, frame, (160, 90))).mean() < 1.0


def test_fast_detection_skips_deblocking_but_keeps_every_frame(clip):
    opts = DecodeOptions(detect_size=(32, 18), fast_detection=True)
    with FrameStream(clip, opts) as stream:
        assert sum(len(b.frames) for b in stream.batches()) == 60


def test_decode_frame_at_seeks_accurately(clip):
    image = decode_frame_at(clip, 40 / 25, (160, 90))
    assert image is not None
    assert np.abs(image.astype(int) - reference_frame(clip, 40, (160, 90))).mean() < 1.0
    assert decode_frame_at(clip, 100.0, (160, 90)) is None


def test_closing_early_stops_ffmpeg(clip):
    stream = FrameStream(clip, DecodeOptions(detect_size=(32, 18)), batch_frames=4)
    next(iter(stream.batches()))
    stream.close()
    assert stream._proc is not None and stream._proc.poll() is not None
