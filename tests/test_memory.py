"""Memory stays flat: a five-minute video is processed with the same footprint as its first seconds."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from pipeline.core.config import Settings
from pipeline.core.types import ProbeResult
from pipeline.shots.scenes import detect_scenes
from tests import videogen

FPS = 25
SHOT_FRAMES = 10 * FPS
SHOTS = 30  # five minutes


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    shots = [videogen.Shot(videogen.SOURCES[i % len(videogen.SOURCES)], SHOT_FRAMES) for i in range(SHOTS)]
    return videogen.make_video(tmp_path_factory.mktemp("memory") / "long.mp4", shots, size=(96, 54), fps=FPS,
                               extra=["-preset", "ultrafast"])


def test_rss_does_not_grow_with_video_length(long_video):
    """A leak of even one small detection frame (64x36 RGB) per frame would add ~40 MB here."""
    total = SHOTS * SHOT_FRAMES
    probe = ProbeResult(duration_s=total / FPS, fps=FPS, frame_count=total, width=96, height=54, codec="h264")
    proc = psutil.Process()
    rss: list[int] = []
    scenes = 0
    for scene in detect_scenes(long_video, probe, Settings()):
        scenes += 1
        rss.append(proc.memory_info().rss)
        assert scene.candidates
    assert scenes == SHOTS
    warm = max(rss[: SHOTS // 4])  # after the first minute or so: buffers, threads and pipes are in place
    growth_mb = (max(rss) - warm) / 2**20
    assert growth_mb < 8, f"RSS grew {growth_mb:.1f} MB over five minutes of video"
