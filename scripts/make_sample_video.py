"""Make the demo's sample video: ~16 s, 640x360, six shots with hard cuts.

Generated with ffmpeg's test sources (no download). Usage:
    python scripts/make_sample_video.py OUT.mp4
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.videogen import SOURCES, Shot, make_video

FPS = 25
SHOT_FRAMES = [75, 50, 100, 60, 40, 75]


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: make_sample_video.py OUT.mp4")
    out = Path(sys.argv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    shots = [Shot(SOURCES[i % len(SOURCES)], n) for i, n in enumerate(SHOT_FRAMES)]
    make_video(out, shots, size=(640, 360), fps=FPS)
    cuts, total = [], 0
    for n in SHOT_FRAMES[:-1]:
        total += n
        cuts.append(total)
    print(f"{out}: {sum(SHOT_FRAMES)} frames at {FPS} fps, cuts at frames {cuts}")


if __name__ == "__main__":
    main()
