"""The bench's generated 1080p H.264 video with known boundaries (cached in bench/.cache/).

About three minutes at 25 fps: shots of varied lavfi content joined by hard
cuts, dissolves and fades through black, with non-boundary events (flashes,
fast pans, occluding objects) inside some shots. Sources are rendered at
480x270 and scaled up inside ffmpeg (rendering mandelbrot at 1080p would
take far longer than encoding), with film-like grain on some shots.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.videogen import Boundary, Shot, Transition, make_timeline, with_flash, with_occluder, with_pan

CACHE = Path(__file__).resolve().parent / ".cache"
SRC_W, SRC_H = 480, 270
_BASE = [
    f"testsrc2=size={SRC_W}x{SRC_H}:rate={{fps}}",
    f"mandelbrot=size={SRC_W}x{SRC_H}:rate={{fps}}",
    f"smptebars=size={SRC_W}x{SRC_H}:rate={{fps}}",
    f"cellauto=size={SRC_W}x{SRC_H}:rate={{fps}}:rule=110",
    f"life=size={SRC_W}x{SRC_H}:rate={{fps}}:seed=1:mold=10:ratio=0.3:death_color=#C83232:life_color=#00ff00",
    f"gradients=size={SRC_W}x{SRC_H}:rate={{fps}}:speed=0.03",
    f"color=c=0x2050c0:size={SRC_W}x{SRC_H}:rate={{fps}},drawbox=x='iw/4+40*sin(t)':y=ih/4:w=iw/2:h=ih/2:color=orange:t=fill",
    f"rgbtestsrc=size={SRC_W}x{SRC_H}:rate={{fps}}",
]


def build_timeline(seed: int = 7, seconds: float = 180.0, fps: int = 25) -> tuple[list[Shot], list[Transition]]:
    """A deterministic, varied list of shots and transitions about ``seconds`` long."""
    rng = random.Random(seed)
    shots: list[Shot] = []
    transitions: list[Transition] = []
    total, prev = 0, -1
    while total < seconds * fps:
        kind = rng.choice([k for k in range(len(_BASE)) if k != prev])
        prev = kind
        frames = rng.randint(2 * fps, 8 * fps)
        source = _BASE[kind] + f",hue=h={rng.randint(0, 359)}"
        event = rng.random()
        if event < 0.2:
            source = with_flash(source, rng.randint(fps, frames - fps), rng.choice([1, 2]))
        elif event < 0.4:
            source = with_pan(source, rng.choice([1.5, 2.5]))
        elif event < 0.6:
            source = with_occluder(source, round(rng.uniform(0.8, frames / fps - 1.2), 2))
        if rng.random() < 0.5:
            source += ",noise=alls=6:allf=t"
        if shots:
            roll = rng.random()
            if roll < 0.15:
                transitions.append(Transition("dissolve", rng.randint(12, 25)))
            elif roll < 0.3:
                transitions.append(Transition("fade", rng.randint(14, 30)))
            else:
                transitions.append(Transition())
        shots.append(Shot(source, frames))
        total += frames - (transitions[-1].frames if len(shots) > 1 else 0)
    return shots, transitions


def bench_video(size: tuple[int, int] = (1920, 1080), fps: int = 25) -> tuple[Path, list[Boundary], int]:
    """The cached bench video and its ground truth, generating them on first use."""
    CACHE.mkdir(parents=True, exist_ok=True)
    video = CACHE / f"scenes_{size[0]}x{size[1]}.mp4"
    truth = video.with_suffix(".json")
    if not (video.exists() and truth.exists()):
        shots, transitions = build_timeline(fps=fps)
        tmp = video.with_suffix(".part.mp4")
        _, boundaries, frames = make_timeline(tmp, shots, transitions, size=size, fps=fps)
        tmp.replace(video)
        truth.write_text(json.dumps({"frames": frames, "boundaries": [b.__dict__ for b in boundaries]}))
    data = json.loads(truth.read_text())
    return video, [Boundary(**b) for b in data["boundaries"]], data["frames"]


if __name__ == "__main__":
    path, bounds, n = bench_video()
    print(path, n, "frames,", len(bounds), "boundaries")
